import type { Selectable } from 'kysely';
import type { PackageVersionsTable } from '../db/database.js';
import type { PackageVersion } from '../../shared/proto.js';
import { formatVersion } from '../../shared/versions.js';

export function versionToProto(v: Selectable<PackageVersionsTable>): PackageVersion {
  return {
    package: v.package,
    version: formatVersion(v),
    source: v.source,
    run_id: v.run_id ?? '',
    object_key: v.object_key,
    size_bytes: v.size_bytes,
    sha256: v.sha256,
    created_at: v.created_at.toISOString(),
    trained_from: v.trained_major !== null ? formatVersion({ major: v.trained_major, minor: v.trained_minor ?? 0 }) : '',
    score: v.score ?? 0,
    has_score: v.score !== null && v.score !== undefined,
    has_evaluate: v.has_evaluate === true ? 'yes' : v.has_evaluate === false ? 'no' : 'unknown',
  };
}
