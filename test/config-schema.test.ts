/** config/schema.json: generated from the parser's schema, committed, and named by every config file. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema, parseConfig } from '../lambdas/core/config';
import { ConfigError } from '../lambdas/core/errors';
import { CONFIG_DIRECTORY, CONFIG_SCHEMA_FILE, loadEnvironment } from '../lib/environments';
import {
  configReference,
  REFERENCE_END,
  REFERENCE_START,
  withConfigReference,
} from '../ops/config-reference';

const readJson = (path: string) =>
  JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
const configFiles = readdirSync(CONFIG_DIRECTORY)
  .map((file) => join(CONFIG_DIRECTORY, file))
  .filter((path) => path.endsWith('.json') && path !== CONFIG_SCHEMA_FILE);

describe('config/schema.json', () => {
  it('is what npm run config:schema generates from the parser’s schema today', () => {
    expect(
      readJson(CONFIG_SCHEMA_FILE),
      'config/schema.json is stale: run npm run config:schema',
    ).toEqual(configJsonSchema());
  });

  it('carries the parser’s defaults, ranges and closed objects', () => {
    expect(configJsonSchema()).toMatchObject({
      additionalProperties: false,
      required: ['tables'],
      properties: {
        tables: { minItems: 1, items: { additionalProperties: false } },
        locks: {
          properties: {
            lockTimeoutMs: { type: 'integer', minimum: 10, maximum: 60000, default: 50 },
          },
        },
        aws: { properties: { schedule: { properties: { timeZone: { default: 'UTC' } } } } },
      },
    });
  });

  it.each(configFiles)('is named by %s, whose "$schema" the parser accepts and drops', (path) => {
    const value = readJson(path);
    expect(value.$schema).toBe('./schema.json');
    expect(parseConfig(value, path)).not.toHaveProperty('$schema');
  });

  it('is not an environment', () => {
    expect(() => loadEnvironment('schema', '-c env')).toThrow(ConfigError);
    expect(() => loadEnvironment('schema', '-c env')).toThrow(
      '-c env=schema: there is no config/schema.json; environments: dev, example, prod.',
    );
  });
});

describe('the README’s configuration reference', () => {
  it('is the table npm run config:schema writes from the schema today', () => {
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(
      readme.indexOf(REFERENCE_START),
      readme.indexOf(REFERENCE_END) + REFERENCE_END.length,
    );
    expect(section, 'README.md is stale: run npm run config:schema').toBe(
      configReference(configJsonSchema()),
    );
  });

  it('has a row per key with its default, range and choices', () => {
    const reference = configReference(configJsonSchema());
    expect(reference).toContain(
      '| `locks.pollIntervalSeconds` | `1` | How often to look at the locks again while blocked, in seconds. From 1 to 300. |',
    );
    expect(reference).toMatch(
      /\| `tables\[\]\.strategy` \| `rename` \| .* One of `rename`, `truncate`, `merge`\. \|/,
    );
    expect(reference).toMatch(/\| `aws\.redshift\.database` \| required \|/);
    expect(reference).not.toContain('$schema');
  });

  it('replaces only the section between the markers, and refuses a README without them', () => {
    const readme = `intro\n${REFERENCE_START}\nold\n${REFERENCE_END}\noutro\n`;
    expect(withConfigReference(readme, 'new')).toBe('intro\nnew\noutro\n');
    expect(() => withConfigReference('intro\n', 'new')).toThrow(
      /has no configuration reference section/,
    );
  });
});
