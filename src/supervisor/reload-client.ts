import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { parseDocument } from 'yaml'
import { substituteEnv, type EnvProblem } from '../config/env.js'
import { isPlainObject } from '../config/fields.js'
import { stackConfigSchema } from '../config/schema.js'

/**
 * How the admin commands (`troupe reload`, `troupe inspect`) reach a running server: `--url`,
 * or the server address in `--config FILE` (the server's own file: a wildcard host is reached
 * on loopback; with server.tls, over HTTPS trusting the server's own certificate); `--token`
 * (or TROUPE_TOKEN) is sent as a Bearer token when server.auth is on.
 */
export interface AdminTarget {
  readonly config?: string | undefined
  readonly url?: string | undefined
  readonly token?: string | undefined
}

/**
 * `troupe reload`: asks a running server to re-read its config through POST /v1/admin/reload.
 * Prints what the server applied, or every error of a refused file. Exit code: 0 applied or
 * unchanged, 1 refused or failed, 2 bad usage.
 */
export async function requestReload(options: AdminTarget): Promise<number> {
  let target: { url: URL; ca?: Buffer }
  try {
    target = await targetOf(options)
  } catch (error) {
    process.stderr.write(`reload: ${(error as Error).message}\n`)
    return 2
  }
  let answer: { status: number; body: string }
  try {
    answer = await call('POST', new URL('/v1/admin/reload', target.url), target.ca, options.token)
  } catch (error) {
    const moved = options.url === undefined ? ' (if this edit moves the server, name the running one with --url, or send it SIGHUP)' : ''
    process.stderr.write(`reload: no server answered at ${target.url.origin}: ${(error as Error).message}${moved}\n`)
    return 1
  }
  let body: Record<string, unknown>
  try {
    body = JSON.parse(answer.body) as Record<string, unknown>
  } catch {
    process.stderr.write(`reload: ${target.url.origin} answered ${answer.status}: ${answer.body.slice(0, 200)}\n`)
    return 1
  }
  if (answer.status !== 200) {
    const error = (body['error'] ?? {}) as { message?: string }
    process.stderr.write(`reload refused (${answer.status}): ${error.message ?? answer.body}\n`)
    return 1
  }
  process.stdout.write(`${JSON.stringify(body, null, 2)}\n`)
  return body['result'] === 'applied' || body['result'] === 'unchanged' ? 0 : 1
}

export async function targetOf(options: AdminTarget): Promise<{ url: URL; ca?: Buffer }> {
  if (options.url !== undefined) {
    try {
      return { url: new URL(options.url) }
    } catch {
      throw new Error(`--url: not a URL: ${options.url}`)
    }
  }
  if (options.config === undefined) throw new Error('needs --config FILE (the running server\'s config) or --url URL')
  const server = serverSection(options.config)
  const host = server.host === '0.0.0.0' || server.host === '::' ? '127.0.0.1' : server.host
  const scheme = server.tls === undefined ? 'http' : 'https'
  return { url: new URL(`${scheme}://${host.includes(':') ? `[${host}]` : host}:${server.port}`), ...(server.tls === undefined ? {} : { ca: readFileSync(server.tls.certfile) }) }
}

/** One request to the server, its status and body. */
export function call(method: 'GET' | 'POST', url: URL, ca: Buffer | undefined, token: string | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    const headers = { ...(method === 'POST' ? { 'content-length': 0 } : {}), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) }
    const req = send(url, { method, headers, ...(ca === undefined ? {} : { ca }) }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * The file's `server` section alone: the rest of the file may name variables only the server's
 * environment has, or be the broken edit the server is about to refuse and report.
 */
function serverSection(file: string): ReturnType<typeof stackConfigSchema.shape.server.parse> {
  let raw: unknown
  try {
    raw = parseDocument(readFileSync(file, 'utf8')).toJS()
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}; name the server with --url`)
  }
  const problems: EnvProblem[] = []
  const section = substituteEnv(isPlainObject(raw) ? raw['server'] : undefined, process.env, 'server', problems)
  const parsed = stackConfigSchema.shape.server.safeParse(section ?? undefined)
  if (problems.length > 0 || !parsed.success) {
    const why = problems[0]?.message ?? parsed.error?.issues[0]?.message ?? 'invalid'
    throw new Error(`cannot tell the server's address from ${file} (server: ${why}); name it with --url`)
  }
  return parsed.data
}
