import { invalid } from './errors.js';

export interface Version {
  major: number;
  minor: number;
}

export function parseVersion(text: string, what = 'version'): Version {
  const m = /^(\d{1,6})\.(\d{1,6})$/.exec(text.trim());
  if (!m) throw invalid(`${what} "${text}" is not of the form MAJOR.MINOR (for example 1.0)`);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

export const formatVersion = (v: Version) => `${v.major}.${v.minor}`;
