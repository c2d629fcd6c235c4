/** Reading the config file a person gives a local command. */
import { readFile } from 'node:fs/promises';
import { parseRuntimeConfig, type RuntimeConfig } from '../../lambdas/core/config';
import { ConfigError } from '../../lambdas/core/errors';

export async function readConfigFile(path: string): Promise<RuntimeConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  return parseRuntimeConfig(json, path);
}
