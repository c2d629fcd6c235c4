/** Reading what a person gives a local command: the config file, the --tables list. */
import { readFile } from 'node:fs/promises';
import { parseRuntimeConfig, type RuntimeConfig } from '../../lambdas/core/config';
import { ConfigError } from '../../lambdas/core/errors';

/** Splits `--tables` on commas outside double quotes: `sales."a,b",public.c`. */
export function splitTableList(text: string): string[] {
  const names: string[] = [];
  let current = '';
  let quoted = false;
  for (const character of text) {
    if (character === '"') quoted = !quoted;
    if (character === ',' && !quoted) {
      names.push(current.trim());
      current = '';
    } else {
      current += character;
    }
  }
  names.push(current.trim());
  return names.filter((name) => name.length > 0);
}

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
