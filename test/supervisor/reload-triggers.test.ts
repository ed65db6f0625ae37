import { mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { fakeOpenAI } from '../../bench/fixtures/upstreams.js'
import { runCli } from '../fixtures/cli.js'
import { cliStackConfig, freePort, startCli, startCliStack } from '../fixtures/cli-stack.js'
import { eventually } from '../fixtures/eventually.js'
import { tempDir } from '../fixtures/stack.js'

/** What troupe reloads on: SIGHUP, the config file's content changing, and `troupe reload`. */

const inspect = async (url: string) => (await (await fetch(`${url}/v1/inspect/config`)).json()) as { generation: number; sha256: string; lastReload?: { trigger: string; result: string; appliedLive: string[] } }
const imageName = async (url: string) => ((await (await fetch(`${url}/v1/version`)).json()) as { image_name: string }).image_name

t.test('SIGHUP and `troupe reload` re-read the file; an invalid file is refused by both', async t => {
  const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
  t.teardown(() => upstream.close())
  const { file, yaml, running } = await startCliStack(t, upstream.url, 5000)

  writeFileSync(file, yaml.replace('image_name: shutdown', 'image_name: by-signal'))
  running.child.kill('SIGHUP')
  await eventually(async () => (await imageName(running.url)) === 'by-signal', 'the SIGHUP reload', 5000)
  t.match(await inspect(running.url), { generation: 2, lastReload: { trigger: 'signal', result: 'applied', appliedLive: ['image_name'] } })

  // logging.redact applies live to what the process logs next: here, the next reload's list of changes.
  writeFileSync(file, `${yaml.replace('image_name: shutdown', 'image_name: redacting')}logging: { redact: [changes] }\n`)
  running.child.kill('SIGHUP')
  await eventually(async () => (await imageName(running.url)) === 'redacting', 'the reload that adds the redaction', 5000)
  t.match(running.output(), /"changes":\["image_name \(hot\)","logging.redact \(hot\)"\]/, 'the reload that adds it logs before it applies')

  writeFileSync(file, `${yaml.replace('image_name: shutdown', 'image_name: by-command')}logging: { redact: [changes] }\n`)
  const byFile = await runCli(['reload', '--config', file])
  t.equal(byFile.code, 0, byFile.stderr)
  t.match(byFile.stdout, /"result": "applied"/)
  t.equal(await imageName(running.url), 'by-command', '--config finds the server by the address in the file')
  t.match(running.output(), /"changes":"\[redacted\]"[^\n]*"msg":"reloading config"/, 'the next one logs its changes redacted')

  writeFileSync(file, yaml.replace('image_name: shutdown', 'image_name: by-url'))
  const byUrl = await runCli(['reload', '--url', running.url])
  t.equal(byUrl.code, 0, byUrl.stderr)
  t.equal(await imageName(running.url), 'by-url')

  writeFileSync(file, yaml.replace('image_name: shutdown', 'image_name: never').replace('drain_timeout_ms: 5000', 'drain_timeout_ms: -1'))
  const refused = await runCli(['reload', '--config', file])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /troupe\.drain_timeout_ms/, 'the refusal names the field')
  t.equal(await imageName(running.url), 'by-url', 'nothing changed')
  t.match(await inspect(running.url), { generation: 5, lastReload: { trigger: 'admin', result: 'invalid' } })

  running.child.kill('SIGTERM')
  t.equal(await running.exited, 0)
})

t.test('a change of the content reloads; a touch does not; a symlink swapped under the path is followed', async t => {
  const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
  t.teardown(() => upstream.close())
  const dir = tempDir(t)
  // As Kubernetes mounts a ConfigMap: stack.yaml -> ..data/stack.yaml, ..data -> a versioned directory.
  const yaml = cliStackConfig(dir, upstream.url, 5000, await freePort())
  mkdirSync(join(dir, 'v1'))
  writeFileSync(join(dir, 'v1', 'stack.yaml'), yaml)
  symlinkSync('v1', join(dir, '..data'))
  symlinkSync(join('..data', 'stack.yaml'), join(dir, 'stack.yaml'))
  const running = await startCli(t, join(dir, 'stack.yaml'), [])

  utimesSync(join(dir, 'v1', 'stack.yaml'), new Date(), new Date())
  await new Promise(resolve => setTimeout(resolve, 500))
  t.equal((await inspect(running.url)).generation, 1, 'a touch leaves the content and the generation alone')

  mkdirSync(join(dir, 'v2'))
  writeFileSync(join(dir, 'v2', 'stack.yaml'), yaml.replace('image_name: shutdown', 'image_name: swapped'))
  symlinkSync('v2', join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  await eventually(async () => (await imageName(running.url)) === 'swapped', 'the reload after the symlink swap', 5000)
  t.match(await inspect(running.url), { generation: 2, lastReload: { trigger: 'watch', result: 'applied' } })

  writeFileSync(join(dir, 'v2', 'stack.yaml'), yaml.replace('image_name: shutdown', 'image_name: edited'))
  await eventually(async () => (await imageName(running.url)) === 'edited', 'the reload after an edit in place', 5000)
  running.child.kill('SIGTERM')
  t.equal(await running.exited, 0)
})

t.test('with server.auth, `troupe reload` and `troupe inspect` send --token (or TROUPE_TOKEN); without it they are refused', async t => {
  const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
  t.teardown(() => upstream.close())
  const dir = tempDir(t)
  const key = 'tr-reload-triggers'
  const { createHash } = await import('node:crypto')
  const auth = `auth: { provider_config: { type: api_keys, keys: [{ hash: 'sha256:${createHash('sha256').update(key).digest('hex')}', principal: operator }] } }`
  const yaml = cliStackConfig(dir, upstream.url, 5000, await freePort()).replace(/^server: \{ (.*) \}$/m, `server: { $1, ${auth} }`)
  t.match(yaml, /auth: \{ provider_config/, 'the config has server.auth')
  const file = join(dir, 'stack.yaml')
  writeFileSync(file, yaml)
  const running = await startCli(t, file)

  const refused = await runCli(['reload', '--config', file])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /reload refused \(401\): authentication required/)
  writeFileSync(file, yaml.replace('image_name: shutdown', 'image_name: with-token'))
  const byToken = await runCli(['reload', '--config', file, '--token', key])
  t.equal(byToken.code, 0, byToken.stderr)
  t.equal(await imageName(running.url), 'with-token', 'version is public, and shows the reload applied')

  t.match(await runCli(['inspect', '--url', running.url]), { code: 1, stderr: /401: authentication required/ })
  const shown = await runCli(['inspect', '--config', file], { TROUPE_TOKEN: key })
  t.equal(shown.code, 0, shown.stderr)
  t.match(shown.stdout, /^http:\/\/127\.0\.0\.1:\d+ {2}OK\nconfig {2}.*stack\.yaml {2}generation 2 {2}sha256 [0-9a-f]{12} {2}last reload applied \(admin\)/)
  t.match(shown.stdout, /\nthreads\n {2}main {2}\d+ actors/)
  t.match(shown.stdout, /\n {4}provider:up {2}openaiProvider {2}thread \d+ {2}running {2}restarts 0/)
  const json = await runCli(['inspect', '--url', running.url, '--json', '--token', key])
  t.match(JSON.parse(json.stdout), { health: { status: 'OK' }, config: { generation: 2 }, actors: { root: { kind: 'supervisor' } } })

  running.child.kill('SIGTERM')
  t.equal(await running.exited, 0)
})
