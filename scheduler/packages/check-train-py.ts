// A static look at train.py when a package is pushed: it parses, and has class Main with train and save
// (and whether it has evaluate, which evaluation and full pipelines need).
// Static on purpose: importing it would need the package's requirements, which only the agent installs.
// Without python3 on the scheduler host the check is skipped; the agent's harness makes the same checks.
import { execFile } from 'node:child_process';
import { invalidPackage } from '../../shared/errors.js';

const CHECK = String.raw`
import ast, json, sys
src = sys.stdin.buffer.read()
try:
    tree = ast.parse(src, filename="train.py")
except SyntaxError as e:
    print(json.dumps({"error": "train.py line %s: %s" % (e.lineno, e.msg)})); sys.exit(0)
mains = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Main"]
if not mains:
    print(json.dumps({"error": "train.py has no class Main"})); sys.exit(0)
methods = {n.name for n in mains[-1].body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
missing = [m for m in ("train", "save") if m not in methods]
if missing and not any(isinstance(b, (ast.Name, ast.Attribute)) for b in mains[-1].bases):
    print(json.dumps({"error": "train.py: class Main has no method %s" % " or ".join("%s(self%s)" % (m, ", training_directory" if m == "train" else "") for m in missing)})); sys.exit(0)
# Whether evaluation and full pipelines can run it; not known when Main may inherit the method.
inherits = any(isinstance(b, (ast.Name, ast.Attribute)) for b in mains[-1].bases)
print(json.dumps({"error": None, "has_evaluate": True if "evaluate" in methods else (None if inherits else False)}))
`;

/** 'skipped' without python3; otherwise whether Main has evaluate() (null: it may inherit one). */
export async function checkTrainPy(source: Buffer, python = 'python3'): Promise<'skipped' | { hasEvaluate: boolean | null }> {
  const out = await new Promise<string | null>((resolve, reject) => {
    const child = execFile(python, ['-c', CHECK], { timeout: 20_000, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') resolve(null);
      else if (err) reject(err);
      else resolve(stdout);
    });
    child.stdin?.end(source);
  });
  if (out === null) return 'skipped';
  const { error, has_evaluate: hasEvaluate } = JSON.parse(out) as { error: string | null; has_evaluate: boolean | null };
  if (error) throw invalidPackage(error);
  return { hasEvaluate };
}
