import { z } from 'zod'
import { durationMs } from './duration.js'
import { hot, restart } from './reload.js'

/**
 * The stack.yaml schema: llama-stack's run config v2 in shape (apis, providers, storage
 * backends and the stores that reference them, registered resources, server), plus troupe's
 * workflows and its own section. It is the single source of truth: the TypeScript types, the
 * reload classes, the validator and docs/config.md all come from it.
 */

const KV_BACKEND_TYPES = ['kv_lmdb', 'kv_sqlite', 'kv_redis', 'kv_postgres', 'kv_memory'] as const
const SQL_BACKEND_TYPES = ['sql_lmdb', 'sql_sqlite', 'sql_postgres'] as const
export type KvBackendType = (typeof KV_BACKEND_TYPES)[number]
export type SqlBackendType = (typeof SQL_BACKEND_TYPES)[number]
export const backendFamily = (type: string): 'kv' | 'sql' | undefined =>
  (KV_BACKEND_TYPES as readonly string[]).includes(type) ? 'kv' : (SQL_BACKEND_TYPES as readonly string[]).includes(type) ? 'sql' : undefined

const port = z.number().int().min(1).max(65535)
/** The default request body limit: 10 MiB. */
const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
const RECONCILER_DEFAULTS = { interval_ms: 30_000, timeout_ms: 5_000, cache_ttl_ms: 120_000, failure_threshold: 3, backoff_ms: 2_000, max_backoff_ms: 60_000 }
/** Long enough that a busy event loop does not lose a lease, short enough that a dead owner's runs resume soon. */
const DEFAULT_LEASE_MS = 15_000

const lmdbPath = (family: string) => restart(z.string().min(1), `Directory of the LMDB environment for this ${family} backend; created if missing.`)
const mapSize = restart(z.number().int().positive().default(1024), 'Largest size the LMDB environment may grow to, in MiB.')
const sqlitePath = restart(
  z.string().min(1),
  "llama-stack's SQLite file. troupe serves the backend from an LMDB environment beside it, in the directory `<db_path>.lmdb` (created if missing), and does not read the SQLite file.",
)

/**
 * Where troupe keeps the data of a llama-stack `kv_sqlite` / `sql_sqlite` backend: an LMDB
 * environment in the directory `<db_path>.lmdb` beside the SQLite file, never the file itself,
 * so that llama-stack can still open it.
 */
export const sqliteLmdbPath = (dbPath: string): string => `${dbPath}.lmdb`

/** Postgres connection: either `url`, or host/port/db/user/password. */
const postgresConnection = {
  url: restart(z.string().url().optional(), 'postgres:// connection URL; when set, the other connection fields are ignored.'),
  host: restart(z.string().default('127.0.0.1'), 'Postgres host.'),
  port: restart(port.default(5432), 'Postgres port.'),
  db: restart(z.string().default('postgres'), 'Database name.'),
  user: restart(z.string().default('postgres'), 'User name.'),
  password: restart(z.string().optional(), 'Password (logged redacted).'),
  pool_size: restart(z.number().int().positive().default(10), 'Connections in this backend actor\'s pool.'),
}

export const backendSchema = z.discriminatedUnion('type', [
  z.object({
    type: restart(z.literal('kv_lmdb'), 'Embedded key-value store on LMDB (the default).'),
    path: lmdbPath('kv'),
    map_size_mb: mapSize,
  }),
  z.object({
    type: restart(z.literal('sql_lmdb'), 'Embedded table store on LMDB: no SQL engine, the same contract as sql_postgres.'),
    path: lmdbPath('table'),
    map_size_mb: mapSize,
  }),
  z.object({
    type: restart(z.literal('kv_sqlite'), "llama-stack's SQLite key-value store, served as a kv_lmdb backend in `<db_path>.lmdb`: existing SQLite data is not read."),
    db_path: sqlitePath,
    map_size_mb: mapSize,
  }),
  z.object({
    type: restart(z.literal('sql_sqlite'), "llama-stack's SQLite table store, served as a sql_lmdb backend in `<db_path>.lmdb`: existing SQLite data is not read."),
    db_path: sqlitePath,
    map_size_mb: mapSize,
  }),
  z.object({
    type: restart(z.literal('kv_redis'), 'Key-value store on Redis.'),
    url: restart(z.string().url(), 'redis:// URL.'),
  }),
  z.object({
    type: restart(z.literal('kv_postgres'), 'Key-value store in a Postgres table.'),
    ...postgresConnection,
    table_name: restart(z.string().default('troupe_kv'), 'Table holding the key-value pairs.'),
  }),
  z.object({ type: restart(z.literal('sql_postgres'), 'Table store on Postgres, with real columns.'), ...postgresConnection }),
  z.object({ type: restart(z.literal('kv_memory'), 'In-memory key-value store, lost on restart: for tests.') }),
])
export type BackendConfig = z.infer<typeof backendSchema>

const kvStoreRef = z.object({
  backend: restart(z.string().min(1), 'Name of a kv_* backend under storage.backends.'),
  namespace: restart(z.string().min(1), 'Key prefix that keeps this store apart from others on the same backend.'),
})
const sqlStoreRef = z.object({
  backend: restart(z.string().min(1), 'Name of a sql_* backend under storage.backends.'),
  table_name: restart(z.string().regex(/^[a-z_][a-z0-9_]*$/, 'must be a lowercase SQL identifier'), 'Table this store writes.'),
})
/** When a write is acknowledged: the choice between a response's latency and what `kill -9` may lose. */
const writeMode = z.enum(['async', 'sync'])
const inferenceStoreRef = sqlStoreRef.extend({
  max_write_queue_size: hot(z.number().int().positive().default(10000), 'Records queued or being written; past it a response waits for room (never dropped).'),
  num_writers: hot(z.number().int().positive().max(64).default(4), 'Batches being committed at once.'),
  write_mode: hot(
    writeMode.default('async'),
    "`async`: a completion is answered without waiting for its record, which commits within 25 ms; a stop writes every record, `kill -9` may lose those of the last 25 ms. `sync`: answered only once its record is committed and fsynced (one commit per batch); nothing answered is lost.",
  ),
  retention: hot(
    z
      .object({
        max_count: hot(z.number().int().positive().optional(), 'Keep at most this many completions: the oldest go first.'),
        max_age: hot(durationMs().optional(), "Remove completions recorded longer ago than this: ms, or a duration such as '90s', '15m', '24h', '7d'."),
      })
      .optional(),
    'How many stored completions to keep; unset, every one is kept.',
  ),
})
const conversationsStoreRef = sqlStoreRef.extend({
  write_mode: restart(
    writeMode.default('sync'),
    '`sync`: items are answered once committed and fsynced. `async`: answered once queued, committed within 25 ms; a stop writes them all, `kill -9` may lose those of the last 25 ms.',
  ),
})

/** Which family each named store needs; a store of another name may use either. */
export const STORE_FAMILIES = { metadata: 'kv', sessions: 'kv', prompts: 'kv', inference: 'sql', conversations: 'sql', runs: 'sql' } as const

const providerSchema = z.object({
  provider_id: restart(z.string().min(1), 'Id of this provider, unique within its API (as in llama-stack); empty or `__disabled__` drops the provider.'),
  provider_type: restart(z.string().regex(/^(inline|remote)::[a-z0-9_.-]+$/, 'must look like inline::name or remote::name'), 'Which implementation serves it.'),
  config: restart(z.record(z.string(), z.unknown()).default({}), "The provider's own settings, validated by its provider type."),
  module: restart(z.string().optional(), 'Module of an external provider implementation.'),
})
export type ProviderConfig = z.infer<typeof providerSchema>

const modelSchema = z.object({
  model_id: hot(z.string().min(1), 'The id clients use.'),
  provider_id: hot(z.string().min(1), 'The provider that serves it.'),
  provider_model_id: hot(z.string().min(1).optional(), "The provider's own name for it; defaults to model_id."),
  model_type: hot(z.enum(['llm', 'embedding']).default('llm'), 'llm or embedding.'),
  metadata: hot(z.record(z.string(), z.unknown()).default({}), 'Free-form metadata, e.g. embedding_dimension.'),
})

/** A workflow name: the protocol's, so it appears in URLs (/workflows/{name}/run). */
const WORKFLOW_NAME = /^[A-Za-z0-9_.-]+$/

const workflowSchema = z.object({
  name: restart(z.string().regex(WORKFLOW_NAME, 'must be letters, digits, _, . or - (it is part of URLs)'), 'Unique name of the workflow: the name clients run it by (/workflows/{name}/run).'),
  module: restart(z.string().min(1), "Module that defines it: a path relative to this file's directory, starting ./ or ../ as in an import (./flows/approve.js), or a package specifier (my-flows/approve)."),
  export: restart(z.string().min(1).default('default'), "The module's export that holds the workflow (made with defineWorkflow)."),
  max_concurrent_tasks: hot(z.number().int().min(1).default(8), 'Runs executing at once; more wait in the queue.'),
  queue_size: hot(z.number().int().min(0).default(64), 'Runs admitted to wait for a free slot; beyond it a new run is refused with backpressure (HTTP 429).'),
  timeout_ms: hot(z.number().int().positive().optional(), 'A run still going this long after it started fails with timeout; unset, runs have no limit.'),
  resumable: hot(z.boolean().default(true), 'Resume runs interrupted by a crash from their journal; false fails them with interrupted instead.'),
  retention: hot(durationMs().optional(), "How long a finished run's history is kept: ms, or a duration such as '90s', '15m', '24h', '7d'; unset, it is kept."),
})
export type WorkflowConfig = z.infer<typeof workflowSchema>

export const stackConfigSchema = z
  .object({
    version: restart(z.union([z.literal(2), z.literal('2')]).default(2), 'Config format version; 2 is llama-stack\'s run config v2.'),
    image_name: hot(z.string().default('troupe'), 'A name for this stack, shown by /v1/version and in logs.'),
    apis: restart(z.array(z.string().min(1)).default([]), 'The APIs this stack serves.'),
    providers: restart(z.record(z.string(), z.array(providerSchema)).default({}), 'Providers per API.'),
    storage: restart(
      z
        .object({
          backends: restart(z.record(z.string(), backendSchema).default({}), 'Named storage backends; each runs as one store actor.'),
          stores: restart(
            z
              .object({
                metadata: restart(kvStoreRef.optional(), 'The distribution registry (registered resources).'),
                inference: restart(inferenceStoreRef.optional(), 'Recorded chat completions.'),
                conversations: restart(conversationsStoreRef.optional(), 'Conversations and their items.'),
                runs: restart(sqlStoreRef.optional(), 'Workflow runs, their events and step journals; needed when workflows are configured.'),
                sessions: restart(kvStoreRef.optional(), 'Workflow session state; without it, sessions are kept in the runs store.'),
                prompts: restart(kvStoreRef.optional(), 'Stored prompts.'),
              })
              .default({}),
            'Stores, each a reference to a backend plus a namespace (kv) or table (sql).',
          ),
        })
        .default({ backends: {}, stores: {} }),
      'Storage backends and the stores that use them.',
    ),
    registered_resources: hot(
      z
        .object({
          models: hot(z.array(modelSchema).default([]), 'Models registered at start and persisted in the metadata store.'),
        })
        .default({ models: [] }),
      'Resources registered at start.',
    ),
    server: restart(
      z
        .object({
          host: restart(z.string().default('0.0.0.0'), 'Interface the HTTP server listens on.'),
          port: restart(port.default(8321), 'Port the HTTP server listens on.'),
          max_body_bytes: hot(z.number().int().positive().default(DEFAULT_MAX_BODY_BYTES), 'Largest request body accepted, in bytes; a larger one gets 413.'),
          auth: hot(
            z
              .object({
                provider_config: hot(
                  z.record(z.string(), z.unknown()).optional(),
                  "How callers are authenticated, by `type`: oauth2_token, custom, upstream_header or api_keys (llama-stack's fields; see the README's Authentication). Checked when the config is loaded.",
                ),
                route_policy: hot(
                  z.array(z.unknown()).default([]),
                  "llama-stack's route rules, tried in order, the first match deciding: `permit` or `forbid` `{ paths }` (exact, a prefix ending in `*`, `*`, or `regex:…`), with `when`/`unless` conditions on the caller's attributes (`user with admin in roles`). A request no rule permits is refused with 403; empty, every route is allowed. They apply to every route, the public ones too. Checked when the config is loaded (see the README's Access policy).",
                ),
                access_policy: hot(
                  z.array(z.unknown()).default([]),
                  "llama-stack's resource rules, tried in order, the first match deciding: `permit` or `forbid` `{ principal, actions, resource }` (actions of create, read, update, delete; resource `type::id`, `type::*` or `regex:…`), with `when`/`unless` conditions (`user is owner`, `user in owners teams`, `user with admin in roles`, …). No rule matching denies. Empty, llama-stack's default: the owner, a caller sharing a role, team, project or namespace with the owner, and anyone for unowned resources. Needs a provider_config. Checked when the config is loaded (see the README's Access policy).",
                ),
              })
              .optional(),
            'Authentication (llama-stack\'s server.auth): every route but /v1/health, /v1/version and /metrics needs credentials.',
          ),
          quota: hot(
            z
              .object({
                kvstore: hot(
                  z.object({
                    backend: hot(z.string().min(1), 'Name of a kv_* backend under storage.backends.'),
                    namespace: hot(z.string().min(1), 'Key prefix that keeps the counts apart from other stores on the same backend.'),
                  }),
                  "Where the counts are kept (llama-stack's KVStoreReference). An inline llama-stack kvstore (`{ type: sqlite, db_path }`, redis, postgres) is read as a backend of its own named `server.quota.kvstore`, its `namespace` (default `quota`) kept here.",
                ),
                anonymous_max_requests: hot(z.number().int().min(0).default(100), 'Requests each unauthenticated client (by IP address) may make per period.'),
                authenticated_max_requests: hot(z.number().int().min(0).default(1000), 'Requests each authenticated principal may make per period.'),
                period: hot(z.enum(['day']).default('day'), "The window requests are counted in: fixed, aligned to UTC midnight (llama-stack's only period)."),
                max_concurrent_streams: hot(
                  z.number().int().positive().optional(),
                  'troupe: streams each client may have open at once (streamed chat completions and completions, GET /events/{id}); unset, no limit.',
                ),
                max_concurrent_runs: hot(
                  z.number().int().positive().optional(),
                  'troupe: workflow runs each client may have going at once: POST /workflows/{name}/run while it waits, run-nowait until the run finishes; unset, no limit.',
                ),
              })
              .optional(),
            "Request quotas (llama-stack's server.quota), counted per principal, or per IP address without authentication, in a kv store so that counts survive a restart; past one, 429 with Retry-After. Routes served without credentials are not counted.",
          ),
          cors: hot(z.union([z.boolean(), z.object({ allow_origins: hot(z.array(z.string()), 'Origins allowed to call the API.') })]).optional(), 'CORS: true for any origin, or a list.'),
          workflows_context_secret: hot(
            z.string().min(16).optional(),
            'Key for the HMAC-SHA256 signature of workflow contexts clients send back; without it client contexts are refused (logged redacted).',
          ),
          tls: restart(
            z
              .object({
                certfile: restart(z.string(), 'PEM certificate chain.'),
                keyfile: restart(z.string(), 'PEM private key.'),
                cafile: restart(z.string().optional(), 'CA bundle: when set, clients must present a certificate it signed.'),
              })
              .optional(),
            'Serve HTTPS with these files.',
          ),
        })
        .default({ host: '0.0.0.0', port: 8321, max_body_bytes: DEFAULT_MAX_BODY_BYTES }),
      'The OpenAI-compatible HTTP server.',
    ),
    workflows: restart(z.array(workflowSchema).default([]), 'Durable workflows, each run by its own actor; they need storage.stores.runs.'),
    logging: hot(
      z
        .object({
          level: hot(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'), 'Log level.'),
          redact: hot(z.array(z.string()).default([]), 'Extra log paths to redact (a.b.c, * for any key), beyond the built-in secret fields, in the lines of every thread.'),
        })
        .default({ level: 'info', redact: [] }),
      'Logging.',
    ),
    troupe: restart(
      z
        .object({
          workers: restart(z.number().int().min(0).max(256).optional(), 'Pool worker threads; defaults to the number of CPUs. A reload resizes the pool: a shrink restarts the actors of the retired threads on the others.'),
          drain_timeout_ms: hot(z.number().int().positive().default(30_000), 'How long shutdown and restarts wait for in-flight runs.'),
          ask_timeout_ms: hot(z.number().int().positive().default(30_000), 'Default ask timeout between actors, on every thread, for asks sent from then on.'),
          node_id: restart(
            z.string().min(1).optional(),
            "This process's identity as owner of workflow runs; runs it owned are resumed at once when it starts again. Defaults to the host name. Two live processes must not share one.",
          ),
          lease_ms: restart(z.number().int().min(1000).default(DEFAULT_LEASE_MS), "How long a workflow run's lease lasts unrenewed; after that another owner may claim and resume the run."),
          reconciler: hot(
            z
              .object({
                interval_ms: hot(z.number().int().positive().default(30_000), 'How often every provider is asked what it serves, in the background.'),
                timeout_ms: hot(z.number().int().positive().default(5_000), "How long one provider's answer may take before it counts as a failure; the others are not held up by it."),
                cache_ttl_ms: hot(
                  z.number().int().positive().default(120_000),
                  "How long a provider's model list is served after its last answer: one that has not answered for longer shows no models (keep it above interval_ms).",
                ),
                failure_threshold: hot(z.number().int().positive().default(3), "Failed checks in a row that open a provider's circuit breaker: its models are then refused at once (503 provider_unavailable)."),
                backoff_ms: hot(z.number().int().positive().default(2_000), 'How long a breaker stays open the first time before one check is let through (half-open).'),
                max_backoff_ms: hot(z.number().int().positive().default(60_000), 'The longest a breaker stays open: each failed half-open check doubles the wait, up to this.'),
              })
              .default(RECONCILER_DEFAULTS),
            'The runtime-state reconciler: it compares the declared providers with what they serve.',
          ),
        })
        .default({ drain_timeout_ms: 30_000, ask_timeout_ms: 30_000, lease_ms: DEFAULT_LEASE_MS, reconciler: RECONCILER_DEFAULTS }),
      "troupe's own runtime settings.",
    ),
  })

export type StackConfig = z.infer<typeof stackConfigSchema>
export type StackConfigInput = z.input<typeof stackConfigSchema>
