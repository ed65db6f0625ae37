import { randomBytes } from 'node:crypto'
import { closeSync, openSync, writeFileSync, ftruncateSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { ConfigError, loadConfigFile, parseConfig, type ConfigIssue } from '../../src/config/index.js'
import { runCli } from '../fixtures/cli.js'
import { tempDir } from '../fixtures/stack.js'

/** The issues of the ConfigError `parse` throws; fails the test when it throws anything else or nothing. */
function issuesOf(t: Test, parse: () => unknown): readonly ConfigIssue[] {
  try {
    parse()
  } catch (error) {
    if (error instanceof ConfigError) return error.issues
    t.fail(`threw ${String(error)}, not a ConfigError`)
    return []
  }
  t.fail('parsed')
  return []
}

/** The issues of the ConfigError loading `file` rejects with; fails the test when it rejects with anything else, or loads. */
async function loadIssues(t: Test, file: string): Promise<readonly ConfigIssue[]> {
  try {
    await loadConfigFile(file, {})
  } catch (error) {
    if (error instanceof ConfigError) return error.issues
    t.fail(`rejected with ${String(error)}, not a ConfigError`)
    return []
  }
  t.fail('loaded')
  return []
}

/** Runs `fn`, failing the test when it takes longer than `ms`. */
function within<T>(t: Test, ms: number, fn: () => T): T {
  const started = performance.now()
  const result = fn()
  const took = performance.now() - started
  t.ok(took < ms, `took ${took.toFixed(0)} ms (bound ${ms})`)
  return result
}

const BILLION_LAUGHS = `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

t.test('an empty file, or one of only comments, is not a config', async t => {
  for (const text of ['', '\n\n', '# nothing here\n  # nor here\n', '---\n']) {
    t.same(issuesOf(t, () => parseConfig(text, {}, 'empty.yaml')), [{ path: 'empty.yaml', message: 'the config is empty' }], JSON.stringify(text))
  }
})

t.test('an alias inside the value it names is refused with its path', async t => {
  const issues = within(t, 1_000, () => issuesOf(t, () => parseConfig('a: &a [*a]\n', {}, 'cycle.yaml')))
  t.match(issues, [{ path: 'a[0]', message: /contains it/ }])
  const deeper = issuesOf(t, () => parseConfig('server: &s { tls: { again: *s } }\n', {}, 'cycle.yaml'))
  t.match(deeper, [{ path: 'server.tls.again', message: /contains it/ }])
})

t.test('a billion laughs is refused as an alias bomb, quickly', async t => {
  const issues = within(t, 1_000, () => issuesOf(t, () => parseConfig(BILLION_LAUGHS, {}, 'lol.yaml')))
  t.match(issues, [{ path: /^lol\.yaml/, message: /alias/ }])
})

t.test('more than 100 aliases are refused at the first one past the limit', async t => {
  const text = `x: &x 1\nlist:\n${Array.from({ length: 150 }, () => '  - *x\n').join('')}`
  t.same(issuesOf(t, () => parseConfig(text, {}, 'many.yaml')), [{ path: 'many.yaml:103:5', message: 'more than 100 aliases' }])
})

t.test('deep nesting is refused, never a stack overflow', async t => {
  const flow = within(t, 2_000, () => issuesOf(t, () => parseConfig(`a: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`, {}, 'deep.yaml')))
  t.match(flow, [{ path: /^deep\.yaml/, message: /nest/ }])
  const block = Array.from({ length: 80 }, (_, depth) => `${'  '.repeat(depth)}k${depth}:`).join('\n') + ' leaf\n'
  t.match(issuesOf(t, () => parseConfig(block, {}, 'deep.yaml')), [{ path: /^k0\.k1\..*\.k63$/, message: 'nested more than 64 deep' }])
})

t.test('more YAML tokens than a config has are refused before the parser sees them', async t => {
  const issues = within(t, 500, () => issuesOf(t, () => parseConfig(`a: [${'1,'.repeat(2_000_000)}]\n`, {}, 'wide.yaml')))
  t.same(issues, [{ path: 'wide.yaml', message: 'more than 200000 YAML tokens; a stack config has a few thousand' }])
})

t.test('a key repeated in a mapping is refused where it repeats, in linear time', async t => {
  t.same(issuesOf(t, () => parseConfig('server:\n  port: 1\n  host: x\n  port: 2\n', {}, 'dup.yaml')), [{ path: 'dup.yaml:4:3', message: 'the key "port" appears twice in one mapping' }])
  t.same(issuesOf(t, () => parseConfig('{ a: 1, b: 2, a: 3 }\n', {}, 'dup.yaml')), [{ path: 'dup.yaml:1:15', message: 'the key "a" appears twice in one mapping' }])
  const keys = Array.from({ length: 25_000 }, (_, i) => `k${i}: ${i}\n`).join('')
  const issues = within(t, 3_000, () => issuesOf(t, () => parseConfig(`${keys}k7: again\n`, {}, 'many.yaml')))
  t.same(issues, [{ path: 'many.yaml:25001:1', message: 'the key "k7" appears twice in one mapping' }])
})

t.test('text over 4 MiB is refused before it is parsed, naming its size', async t => {
  const text = `a: "${'x'.repeat(4 * 1024 * 1024)}"\n`
  t.same(within(t, 500, () => issuesOf(t, () => parseConfig(text, {}, 'big.yaml'))), [{ path: 'big.yaml', message: `the config is ${text.length} bytes; the limit is 4194304` }])
})

t.test('a file over 4 MiB is refused unread, and binary garbage as not text', async t => {
  const dir = tempDir(t)
  const big = join(dir, 'big.yaml')
  const fd = openSync(big, 'w')
  ftruncateSync(fd, 50 * 1024 * 1024)
  closeSync(fd)
  t.same(await loadIssues(t, big), [{ path: big, message: 'the config is 52428800 bytes; the limit is 4194304' }])
  const binary = join(dir, 'binary.yaml')
  writeFileSync(binary, Buffer.concat([Buffer.from([0xff, 0xfe, 0x00]), randomBytes(4096)]))
  t.same(await loadIssues(t, binary), [{ path: binary, message: 'the file is not UTF-8 text' }])
  t.match(await loadIssues(t, join(dir, 'missing.yaml')), [{ path: join(dir, 'missing.yaml'), message: /cannot read/ }])
})

t.test('validate prints hostile files as errors with paths and exits 1, without a stack trace', async t => {
  const dir = tempDir(t)
  const files: Record<string, string | Buffer> = {
    'empty.yaml': '',
    'cycle.yaml': 'a: &a [*a]\n',
    'lol.yaml': BILLION_LAUGHS,
    'binary.yaml': Buffer.from([0xc3, 0x28, 0x00, 0xff]),
    'deep.yaml': `a: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`,
  }
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
  const fd = openSync(join(dir, 'big.yaml'), 'w')
  ftruncateSync(fd, 50 * 1024 * 1024)
  closeSync(fd)
  const runs = await Promise.all([...Object.keys(files), 'big.yaml'].map(async name => ({ name, ...(await runCli(['validate', '--config', join(dir, name)])) })))
  for (const { name, code, stderr } of runs) {
    t.equal(code, 1, `${name} exits 1`)
    t.match(stderr, `${join(dir, name)}: 1 error`, `${name}: the summary names the file`)
    t.notMatch(stderr, /\n\s+at /, `${name}: no stack trace`)
    t.match(stderr.split('\n')[0], /^\S+: \S/, `${name}: the error has a path: ${stderr.split('\n')[0]}`)
  }
})

t.test('any text either parses or is refused with ConfigErrors whose issues each have a path', async t => {
  const yamlish = fc
    .array(fc.constantFrom('a', 'server', 'port', ':', ': ', '- ', '&x ', '*x', '[', ']', '{', '}', ',', '\n', '  ', '"', "'", '#', '!!', '---', '${env.X}', '~', '1', 'null', '? ', '|', '>', '\t', '%YAML 1.2\n', '<<: '), { maxLength: 60 })
    .map(tokens => tokens.join(''))
  const check = (text: string): void => {
    try {
      parseConfig(text, {}, 'fuzz.yaml')
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      if (error.issues.length === 0) throw new Error('a ConfigError without issues')
      for (const issue of error.issues) if (typeof issue.path !== 'string' || issue.path === '' || issue.message === '') throw new Error(`an issue without a path or message: ${JSON.stringify(issue)}`)
    }
  }
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), check), { numRuns: 200 })
  fc.assert(fc.property(yamlish, check), { numRuns: 500 })
  t.pass('every text parsed or was refused with paths')
})
