import type { Selectable } from 'kysely';
import type { DatasetsTable } from '../db/database.js';
import type { Dataset } from '../../shared/proto.js';

export function datasetToProto(d: Selectable<DatasetsTable>): Dataset {
  return { name: d.name, file_count: d.file_count, size_bytes: d.size_bytes, created_at: d.created_at.toISOString(), updated_at: d.updated_at.toISOString() };
}
