/**
 * `npm run config:schema`: writes config/schema.json, the JSON Schema every config/*.json
 * points at with "$schema", generated from the parser's own schema (lambdas/core/config.ts).
 * test/config-schema.test.ts fails when the committed file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { configJsonSchema } from '../lambdas/core/config';
import { CONFIG_SCHEMA_FILE } from '../lib/environments';

writeFileSync(CONFIG_SCHEMA_FILE, `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
console.log(`wrote ${CONFIG_SCHEMA_FILE}`);
