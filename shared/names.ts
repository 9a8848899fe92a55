// Validation of names that end up in object keys, SQL rows and subjects. One place, one message style.
import { invalid } from './errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkName(kind: string, name: string): string {
  if (!NAME.test(name)) {
    throw invalid(
      `${kind} name "${name}" is invalid: expected 1-100 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

export function checkEnvName(name: string): string {
  if (!ENV_NAME.test(name)) throw invalid(`environment variable name "${name}" is invalid: expected [A-Za-z_][A-Za-z0-9_]*`);
  return name;
}

/**
 * A relative path inside a dataset or package: '/'-separated, no empty, '.' or '..' segments, no NUL.
 * Returns it normalised (no leading or trailing '/').
 */
export function checkRelativePath(what: string, p: string): string {
  const trimmed = p.replace(/^\/+|\/+$/g, '');
  if (p.startsWith('/')) throw invalid(`${what} "${p}" is absolute; expected a path relative to the root`);
  const parts = trimmed.split('/');
  if (trimmed === '' || parts.some((s) => s === '' || s === '.' || s === '..' || s.includes('\0') || s.includes('\\'))) {
    throw invalid(`${what} "${p}" is not a clean relative path (no empty, '.' or '..' segments, no backslashes)`);
  }
  return trimmed;
}

/** "NAME" or "NAME/sub/folder" → its parts. */
/** "NAME" or "NAME/sub": parseDatasetRef's inverse, as runs show their datasets. */
export function formatDatasetRef(name: string, sub: string | null | undefined): string {
  return sub ? `${name}/${sub}` : name;
}

export function parseDatasetRef(ref: string, what = 'dataset'): { name: string; sub: string } {
  const slash = ref.indexOf('/');
  const name = checkName(what, slash < 0 ? ref : ref.slice(0, slash));
  const rest = slash < 0 ? '' : ref.slice(slash + 1).replace(/\/+$/, '');
  return { name, sub: rest === '' ? '' : checkRelativePath(`${what} subfolder`, rest) };
}
