// Test wheels: a pure-Python wheel built from a few files, for requirements that reach no index.
import { mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

/** A wheel (name-version-py3-none-any.whl) in `dir` holding `files` (path in the wheel: text). */
export function wheel(dir: string, name: string, version: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  const script = `
import base64, hashlib, json, os, sys, zipfile
dir, name, version, files = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
info = "%s-%s.dist-info" % (name, version)
files[info + "/METADATA"] = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (name, version)
files[info + "/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
record = []
whl = os.path.join(dir, "%s-%s-py3-none-any.whl" % (name, version))
with zipfile.ZipFile(whl, "w") as z:
    for p, text in files.items():
        data = text.encode()
        zi = zipfile.ZipInfo(p)
        zi.external_attr = (0o100755 if "/scripts/" in p else 0o100644) << 16  # pip wants the file type too
        z.writestr(zi, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (p, digest, len(data)))
    record.append(info + "/RECORD,,")
    z.writestr(info + "/RECORD", "\\n".join(record) + "\\n")
print(whl)
`;
  const r = spawnSync('python3', ['-c', script, dir, name, version, JSON.stringify(files)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the wheel: ${r.stderr}`);
  return r.stdout.trim();
}
