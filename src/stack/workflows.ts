import { hostname } from 'node:os'
import { resolve as resolvePath } from 'node:path'
import type { ActorChildSpec, ActorRef } from '../actor/index.js'
import { ConfigError, type ConfigIssue, type LoadedConfig, type StackConfig, type WorkflowConfig } from '../config/index.js'
import { isWorkflow } from '../../actors/workflows/define.js'
import type { WorkflowActorArgs } from '../../actors/workflows/protocol.js'
import { workflowActor } from '../../actors/workflows/workflow-actor.js'
import { importModule } from './modules.js'
import type { ModelsMessage } from '../../actors/routing/models.js'
import type { KvMessage, TableMessage } from '../../actors/stores/protocol.js'

/** A configured workflow whose module loaded and whose export is a workflow. */
export interface ResolvedWorkflow {
  readonly name: string
  /** The module's URL, as every thread that hosts the workflow imports it. */
  readonly url: string
  readonly exportName: string
  readonly config: WorkflowConfig
  /** Where it is in the file: `workflows[1]`. */
  readonly path: string
}

/** The name a workflow's actor is registered under. */
export const workflowActorName = (name: string): string => `workflow:${name}`

/**
 * Checks every configured workflow: names unique, a runs store to journal in, and each module
 * loaded (a path against the config file's directory, or a package resolved from there) with
 * a workflow at the configured export. Importing is the only way to know the export is a
 * workflow, hence async. Every problem is reported at once, with its path.
 */
export async function resolveWorkflows(loaded: LoadedConfig): Promise<ResolvedWorkflow[]> {
  const { workflows, storage } = loaded.config
  if (workflows.length === 0) return []
  const issues: ConfigIssue[] = []
  if (storage.stores.runs === undefined) issues.push({ path: 'storage.stores.runs', message: 'workflows need a runs store (a sql_* backend)' })

  // The config file's own path anchors both kinds of module reference, as an import in it would.
  const configFile = resolvePath(loaded.source)
  const checked = await Promise.all(workflows.map((workflow, index) => loadEntry(workflow, `workflows[${index}]`, configFile)))
  const firstAt = new Map<string, string>()
  const resolved: ResolvedWorkflow[] = []
  workflows.forEach((workflow, index) => {
    const first = firstAt.get(workflow.name)
    if (first === undefined) firstAt.set(workflow.name, `workflows[${index}]`)
    else issues.push({ path: `workflows[${index}].name`, message: `'${workflow.name}' is configured twice (first at ${first})` })
    const result = checked[index]!
    if ('issue' in result) issues.push(result.issue)
    else if (first === undefined) resolved.push(result.workflow)
  })
  if (issues.length > 0) throw new ConfigError(issues, loaded.source)
  return resolved
}

async function loadEntry(workflow: WorkflowConfig, path: string, configFile: string): Promise<{ workflow: ResolvedWorkflow } | { issue: ConfigIssue }> {
  const imported = await importModule(workflow.module, configFile)
  if ('problem' in imported) return { issue: { path: `${path}.module`, message: imported.problem } }
  const { module, url } = imported
  const value = module[workflow.export]
  if (!isWorkflow(value)) {
    const found = Object.keys(module).filter(key => isWorkflow(module[key]))
    const message =
      value === undefined
        ? `${workflow.module} exports no workflow '${workflow.export}' (${found.length > 0 ? `it exports: ${found.join(', ')}` : 'it exports none: make one with defineWorkflow'})`
        : `${workflow.module} exports '${workflow.export}', but it is not a workflow: make it with defineWorkflow${found.length > 0 ? ` (its workflows: ${found.join(', ')})` : ''}`
    return { issue: { path: `${path}.export`, message } }
  }
  return { workflow: { name: workflow.name, url, exportName: workflow.export, config: workflow, path } }
}

/** The actors every workflow actor is given: where runs and sessions are stored, and the models routing table. */
export interface WorkflowRefs {
  readonly runs: ActorRef<TableMessage>
  readonly sessions?: ActorRef<KvMessage>
  readonly models?: ActorRef<ModelsMessage>
}

/** One pool actor per workflow, restarted if it crashes; its in-flight runs resume from their journals. */
export function workflowChildSpecs(resolved: readonly ResolvedWorkflow[], config: StackConfig, refs: WorkflowRefs): ActorChildSpec[] {
  return resolved.map(workflow => workflowChildSpec(workflow, config, refs))
}

export function workflowChildSpec(workflow: ResolvedWorkflow, config: StackConfig, refs: WorkflowRefs): ActorChildSpec {
  const { runs, sessions } = config.storage.stores
  if (runs === undefined) throw new Error('workflowChildSpec: storage.stores.runs is unset (resolveWorkflows reports it)')
  const { config: entry } = workflow
  const args: WorkflowActorArgs = {
    name: workflow.name,
    url: workflow.url,
    exportName: workflow.exportName,
    runs: { store: refs.runs, table: runs.table_name },
    ...(sessions === undefined || refs.sessions === undefined ? {} : { sessions: { store: refs.sessions, namespace: sessions.namespace } }),
    ...(refs.models === undefined ? {} : { models: refs.models }),
    owner: config.troupe.node_id ?? hostname(),
    maxConcurrent: entry.max_concurrent_tasks,
    queueSize: entry.queue_size,
    ...(entry.timeout_ms === undefined ? {} : { timeoutMs: entry.timeout_ms }),
    resumable: entry.resumable,
    ...(entry.retention === undefined ? {} : { retentionMs: entry.retention }),
    leaseMs: config.troupe.lease_ms,
  }
  return {
    id: workflowActorName(workflow.name),
    name: workflowActorName(workflow.name),
    behavior: workflowActor,
    args,
    placement: 'pool' as const,
    // On the worker of its runs store: a run's journal writes, one or more per step, then stay
    // on one thread (measured in npm run bench: wf_http_run_p50_ms).
    near: refs.runs,
    restart: 'permanent' as const,
    // Stopping waits for in-flight steps as long as any drain does; runs cut short resume on the next start.
    shutdownMs: config.troupe.drain_timeout_ms,
  }
}
