/**
 * The README's configuration reference (the table between the markers below), written from
 * the JSON Schema of the config files, so that the keys, defaults, ranges and meanings a reader
 * sees are the ones the parser applies. `npm run config:schema` writes it;
 * test/config-schema.test.ts fails when the README's copy is stale.
 */

export const REFERENCE_START = '<!-- config-reference: written by npm run config:schema -->';
export const REFERENCE_END = '<!-- /config-reference -->';

/** The part of a JSON Schema (as z.toJSONSchema writes it) the table is made from. */
interface SchemaNode {
  readonly description?: string;
  readonly default?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly enum?: readonly string[];
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly required?: readonly string[];
  readonly items?: SchemaNode;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function defaultOf(node: SchemaNode, required: boolean): string {
  if (node.default !== undefined) {
    return `\`${typeof node.default === 'string' ? node.default : JSON.stringify(node.default)}\``;
  }
  return required ? 'required' : 'optional';
}

function meaningOf(node: SchemaNode): string {
  const parts = [node.description ?? ''];
  if (node.enum) parts.push(`One of ${node.enum.map((value) => `\`${value}\``).join(', ')}.`);
  if (node.minimum !== undefined && node.maximum !== undefined) {
    parts.push(`From ${node.minimum} to ${node.maximum}.`);
  }
  return parts.filter((part) => part !== '').join(' ');
}

/**
 * One row per key, `tables[].target` style. An object whose keys all have defaults (locks,
 * unload, retention, aws.schedule) is left to its keys' rows; `$schema` is for editors only.
 */
function rows(node: SchemaNode, path: string): string[] {
  return Object.entries(node.properties ?? {}).flatMap(([key, child]) => {
    if (key === '$schema') return [];
    const keyPath = path ? `${path}.${key}` : key;
    const row = `| \`${keyPath}\` | ${defaultOf(child, node.required?.includes(key) ?? false)} | ${cell(meaningOf(child))} |`;
    return [
      ...(child.properties && child.default !== undefined ? [] : [row]),
      ...rows(child, keyPath),
      ...(child.items ? rows(child.items, `${keyPath}[]`) : []),
    ];
  });
}

/** The reference table of a config JSON Schema, markers included. */
export function configReference(schema: unknown): string {
  return [
    REFERENCE_START,
    '| key | default | meaning |',
    '| --- | --- | --- |',
    ...rows(schema as SchemaNode, ''),
    REFERENCE_END,
  ].join('\n');
}

/** `readme` with its reference section replaced by `reference`; refuses a README without the markers. */
export function withConfigReference(readme: string, reference: string): string {
  const start = readme.indexOf(REFERENCE_START);
  const end = readme.indexOf(REFERENCE_END);
  if (start === -1 || end < start) {
    throw new Error(
      `README.md has no configuration reference section; put the lines ${REFERENCE_START} and ${REFERENCE_END} where the table goes.`,
    );
  }
  return readme.slice(0, start) + reference + readme.slice(end + REFERENCE_END.length);
}
