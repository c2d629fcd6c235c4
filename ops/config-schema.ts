/**
 * `npm run config:schema`: writes config/schema.json, the JSON Schema every config/*.json
 * points at with "$schema", generated from the parser's own schema (lambdas/core/config.ts),
 * and the README's configuration reference from it. test/config-schema.test.ts fails when
 * either committed copy is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { configJsonSchema } from '../lambdas/core/config';
import { CONFIG_SCHEMA_FILE } from '../lib/environments';
import { configReference, withConfigReference } from './config-reference';

const schema = configJsonSchema();
writeFileSync(CONFIG_SCHEMA_FILE, `${JSON.stringify(schema, null, 2)}\n`);
const readme = readFileSync('README.md', 'utf8');
writeFileSync('README.md', withConfigReference(readme, configReference(schema)));
console.log(`wrote ${CONFIG_SCHEMA_FILE} and the configuration reference in README.md`);
