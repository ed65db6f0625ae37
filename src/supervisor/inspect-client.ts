import type { ActorNode, SupervisorNode, SystemSnapshot } from '../actor/index.js'
import { call, targetOf, type AdminTarget } from './reload-client.js'

/**
 * `troupe inspect`: the running stack as a terminal shows it: its health, its config generation
 * and last reload, its threads, and the actor tree with each actor's placement, status, restarts
 * and mailbox. Read from GET /v1/health, /v1/inspect/config and /v1/inspect/actors; `--json`
 * prints the three answers as they came. Exit code: 0 healthy, 1 unhealthy or unreachable, 2
 * bad usage.
 */
export async function inspectServer(options: AdminTarget & { readonly json?: boolean | undefined }): Promise<number> {
  let target: { url: URL; ca?: Buffer }
  try {
    target = await targetOf(options)
  } catch (error) {
    process.stderr.write(`inspect: ${(error as Error).message}\n`)
    return 2
  }
  const get = async (path: string): Promise<Record<string, unknown>> => {
    const answer = await call('GET', new URL(path, target.url), target.ca, options.token)
    const body = JSON.parse(answer.body) as Record<string, unknown>
    // Health answers 503 with its body when an actor is down: that is an answer, not a failure.
    if (answer.status !== 200 && !(path === '/v1/health' && answer.status === 503)) {
      const message = (body['error'] as { message?: string } | undefined)?.message ?? answer.body.slice(0, 200)
      throw new Error(`${path} answered ${answer.status}: ${message}`)
    }
    return body
  }
  let health: Record<string, unknown>
  let config: Record<string, unknown>
  let actors: SystemSnapshot
  try {
    ;[health, config, actors] = await Promise.all([get('/v1/health'), get('/v1/inspect/config'), get('/v1/inspect/actors') as Promise<unknown> as Promise<SystemSnapshot>])
  } catch (error) {
    process.stderr.write(`inspect: ${target.url.origin}: ${(error as Error).message}\n`)
    return 1
  }
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify({ health, config, actors }, null, 2)}\n`)
  } else {
    process.stdout.write(render(target.url, health, config, actors))
  }
  return health['status'] === 'Error' ? 1 : 0
}

function render(url: URL, health: Record<string, unknown>, config: Record<string, unknown>, snapshot: SystemSnapshot): string {
  const lines: string[] = []
  const last = config['lastReload'] as { at: string; result: string; trigger: string } | undefined
  lines.push(`${url.origin}  ${String(health['status'])}`)
  lines.push(`config  ${String(config['source'])}  generation ${String(config['generation'])}  sha256 ${String(config['sha256']).slice(0, 12)}  ${last === undefined ? 'never reloaded' : `last reload ${last.result} (${last.trigger}) at ${last.at}`}`)
  for (const p of (health['unreachable_providers'] as Array<{ provider_id: string; message: string }> | undefined) ?? []) lines.push(`unreachable  ${p.provider_id}: ${p.message}`)
  for (const a of (health['actors_down'] as Array<{ id: string; status: string }> | undefined) ?? []) lines.push(`down  ${a.id}: ${a.status}`)
  lines.push('threads')
  for (const t of snapshot.threads) {
    const delay = t.eventLoopDelay === null ? '' : `  loop delay p99 ${t.eventLoopDelay.p99Ms.toFixed(1)} ms`
    lines.push(`  ${t.kind === 'main' ? 'main' : `${t.kind} ${t.thread}`}  ${t.actors} actors  ${t.pendingAsks} asks pending  ${t.deadLetters.total} dead letters${delay}`)
  }
  lines.push('actors')
  const walk = (node: ActorNode | SupervisorNode, depth: number): void => {
    const indent = '  '.repeat(depth + 1)
    if (node.kind === 'supervisor') {
      lines.push(`${indent}${node.id}  (${node.strategy})  ${node.status}${node.restarts > 0 ? `  ${node.restarts} restarts` : ''}`)
      for (const child of node.children) walk(child, depth + 1)
      return
    }
    const where = node.thread === undefined ? node.placement : node.placement === 'main' ? 'main' : `thread ${node.thread}`
    lines.push(`${indent}${node.id}  ${node.behavior}  ${where}  ${node.status}  restarts ${node.restarts}  mailbox ${node.mailboxDepth}  handled ${node.messagesHandled}`)
  }
  for (const child of snapshot.root.children) walk(child, 0)
  return `${lines.join('\n')}\n`
}
