/**
 * SQLSTATEs the installed functions raise, class RS. RS1xx are refusals: the swap cannot be
 * done this way and nothing was changed (reported as a PreflightError).
 */
export const SYNC_SQLSTATE = {
  /** The staging rows cannot be published: NULL or duplicate key values. Fix the source data. */
  badStagingData: 'RS001',
  /**
   * After an increment was applied, live's whole-table figures are not the source's of the same
   * snapshot (a cursor went backwards, a delete, a change made in live): everything rolled back.
   */
  incrementMismatch: 'RS002',
  /** A dependent of the live table cannot be carried over by rename. */
  uncarriedDependents: 'RS100',
  /** A dependent of the live table uses a column staging lacks or has with another type. */
  dependentsWouldBreak: 'RS101',
  /** The live table's privileges could not be reproduced exactly. */
  privilegesNotReproduced: 'RS102',
  /** Staging's indexes are not the live table's (staging was not prepared). */
  indexesDoNotMatch: 'RS103',
  /** The staging table named in the swap plan does not exist. */
  stagingMissing: 'RS104',
  /** The staging table's columns are not the live table's. Rebuild staging. */
  stagingColumnsDiffer: 'RS110',
  /** The live table cannot be published into with this strategy (e.g. a foreign key references it). */
  strategyNotPossible: 'RS111',
  /** Bad arguments: not a table, the same table twice, key columns missing from live. */
  invalidArguments: 'RS112',
} as const;
