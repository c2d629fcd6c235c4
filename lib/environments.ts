/**
 * The environments a checkout knows: one `config/<name>.json` each. Shared by the CDK app
 * (`cdk deploy -c env=<name>`) and `npm run trigger -- --env <name>`, so both read and check
 * a configuration the same way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AwsSettings,
  parseConfig,
  requireAwsSettings,
  type SyncConfig,
} from '../lambdas/core/config';
import { ConfigError } from '../lambdas/core/errors';

export const CONFIG_DIRECTORY = 'config';
/** The JSON Schema of the environments' files (`npm run config:schema`); not an environment. */
export const CONFIG_SCHEMA_FILE = join(CONFIG_DIRECTORY, 'schema.json');
const ENVIRONMENT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

export interface Environment {
  readonly name: string;
  readonly config: SyncConfig;
  readonly aws: AwsSettings;
}

/** `flag` is how the person named the environment (`-c env`, `--env`), for the error message. */
export function loadEnvironment(
  name: string,
  flag: string,
  directory = CONFIG_DIRECTORY,
): Environment {
  const available = readdirSync(directory)
    .filter((file) => file.endsWith('.json') && join(directory, file) !== CONFIG_SCHEMA_FILE)
    .map((file) => file.slice(0, -'.json'.length));
  const origin = join(directory, `${name}.json`);
  if (!ENVIRONMENT_NAME.test(name) || !available.includes(name)) {
    throw new ConfigError(
      `${flag}=${name}: there is no ${origin}; environments: ${available.join(', ')}. Environment names are lower-case letters, digits and hyphens.`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(origin, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${origin}: is not valid JSON (${(error as Error).message}).`);
  }
  const config = parseConfig(value, origin);
  return { name, config, aws: requireAwsSettings(config, origin) };
}
