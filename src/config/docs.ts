import { listFields, type FieldInfo } from './fields.js'

/** docs/config.md, generated from the schema; a test fails when the committed file is stale. */
export function renderConfigDocs(): string {
  const rows = listFields().map(row)
  return `# stack.yaml reference

Generated from the schema in \`src/config/schema.ts\` by \`npm run docs\`; do not edit by hand.

The shape is llama-stack's run config v2: \`apis\`, \`providers\`, \`storage.backends\` and the
\`storage.stores\` that reference them, \`registered_resources\`, \`server\`, plus troupe's
\`workflows\` and \`troupe\` sections. Check a file with \`node dist/main.js validate --config FILE\`.

**Environment variables.** \`\${env.X}\` requires X; \`\${env.X:=default}\` uses the default when X is
unset or empty; \`\${env.X:+value}\` yields value only when X is set. References work inside longer
strings, \`~/\` is the home directory, and a value that substitution changed is coerced: empty to
null (the same as leaving the field out), \`true\`/\`false\` to booleans, digits to numbers. A
provider whose \`provider_id\` comes out empty or \`__disabled__\` is dropped before the rest of it
is expanded, so the variables only it uses are not required.

**Reload classes.** \`hot\`: a change is applied live by the owning actor. \`restart\`: the owning
actor subtree is drained and restarted with the new config while the rest keeps serving. No
field needs a process restart. Keys the schema does not know are reported as warnings.

**llama-stack configs.** A llama-stack run config loads as it is: the APIs, provider types,
stores, registered resources (other than models) and sections troupe does not serve are skipped
with one warning each, naming the path, and so is a model whose provider is disabled or skipped.
Provider ids are unique within an API. \`kv_sqlite\`/\`sql_sqlite\` backends are served by the LMDB
store in \`<db_path>.lmdb\` (existing SQLite data is not read). With \`--strict\`, every skip and
every unknown key is an error instead.

In paths, \`<key>\` is any name you choose and \`[]\` is every item of a list.

| field | type | default | reload | description |
| --- | --- | --- | --- | --- |
${rows.join('\n')}
`
}

function row(field: FieldInfo): string {
  const name = field.variant === undefined ? field.path : `${field.path} (${field.variant})`
  const fallback = field.defaultValue === undefined ? (field.required ? 'required' : '') : format(field.defaultValue)
  return `| \`${name}\` | ${escape(field.type)} | ${escape(fallback)} | ${field.reload ?? '**missing**'} | ${escape(field.description ?? '')} |`
}

function format(value: unknown): string {
  const text = JSON.stringify(value)
  return text.length > 40 ? '(see fields below)' : `\`${text}\``
}

function escape(text: string): string {
  return text.replaceAll('|', '\\|')
}
