/**
 * Which partitions of a partitioned live table the swap replaced (publish_partitions reports
 * them), for the run summary: the others were left as they were.
 */
import { displayQualified, type QualifiedName } from '../core/identifiers';
import type { SwapResult } from '../core/swap/engine';
import type { ReplacedPartitions } from './state';

export function replacedPartitions(result: SwapResult): ReplacedPartitions[] {
  return result.tables.flatMap(({ live, result: published }) => {
    const replaced = published.partitionsReplaced;
    if (!Array.isArray(replaced)) return [];
    return [
      {
        target: displayQualified(live),
        partitions: replaced.map((entry: { partition: QualifiedName }) =>
          displayQualified(entry.partition),
        ),
      },
    ];
  });
}
