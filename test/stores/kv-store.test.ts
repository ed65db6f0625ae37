import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pack, unpack } from 'msgpackr'
import t from 'tap'
import type { ActorRef } from '../../src/index.js'
import { kvStore, type KvStoreArgs } from '../../actors/stores/kv-store.js'
import type { KvMessage, KvPage } from '../../actors/stores/protocol.js'
import { eventually } from '../fixtures/eventually.js'
import { POSTGRES, REDIS_URL, unreachable } from '../fixtures/servers.js'
import { startSystem } from '../fixtures/system.js'

const lmdbDir = mkdtempSync(join(tmpdir(), 'troupe-kv-'))
t.teardown(() => rmSync(lmdbDir, { recursive: true, force: true }))

interface Backend {
  readonly label: string
  readonly args: KvStoreArgs
  readonly skip: string | undefined
  readonly persistent: boolean
}

// The LMDB path has a dot in its last name: it is still the environment's directory, not a file.
const backends: Backend[] = [
  { label: 'kv_memory', args: { name: 'mem', config: { type: 'kv_memory' } }, skip: undefined, persistent: false },
  { label: 'kv_lmdb', args: { name: 'lmdb', config: { type: 'kv_lmdb', path: join(lmdbDir, 'data.lmdb'), map_size_mb: 256 } }, skip: undefined, persistent: true },
  { label: 'kv_redis', args: { name: 'redis', config: { type: 'kv_redis', url: REDIS_URL } }, skip: await unreachable('Redis', 6379), persistent: true },
  {
    label: 'kv_postgres',
    args: { name: 'pg', config: { type: 'kv_postgres', ...POSTGRES, table_name: 'troupe_kv_test' } },
    skip: await unreachable('Postgres', 5432),
    persistent: true,
  },
]

let namespaces = 0
const freshNamespace = (): string => `t${process.pid}_${Date.now()}_${++namespaces}`

/** Deletes everything a test wrote in its namespace. */
async function clean(store: ActorRef<KvMessage>, namespace: string): Promise<void> {
  for (;;) {
    const page = await store.ask<KvPage>({ type: 'scan', namespace, limit: 1000 })
    await Promise.all(page.items.map(({ key }) => store.ask({ type: 'delete', namespace, key })))
    if (page.cursor === null) return
  }
}

for (const backend of backends) {
  t.test(`${backend.label} honours the key-value contract`, { skip: backend.skip ?? false }, async t => {
    const system = await startSystem(t)
    const store = await system.spawn(kvStore, { placement: 'pool', args: backend.args })
    const scoped = async (name: string, body: (namespace: string) => Promise<void>): Promise<void> => {
      await t.test(name, async () => {
        const namespace = freshNamespace()
        try {
          await body(namespace)
        } finally {
          await clean(store, namespace)
        }
      })
    }

    await scoped('set, get and delete round-trip any msgpack value', async namespace => {
      const values = [{ a: 1, nested: { list: [1, 'two', true] } }, 'text', 42, 3.5, [1, 2, 3], { when: new Date(0).toISOString() }]
      for (const [i, value] of values.entries()) {
        t.equal(await store.ask({ type: 'set', namespace, key: `k${i}`, value }), null)
        t.same(await store.ask({ type: 'get', namespace, key: `k${i}` }), value)
      }
      t.equal(await store.ask({ type: 'set', namespace, key: 'k0', value: 'overwritten' }), null)
      t.equal(await store.ask({ type: 'get', namespace, key: 'k0' }), 'overwritten')
      t.equal(await store.ask({ type: 'delete', namespace, key: 'k0' }), true)
      t.equal(await store.ask({ type: 'delete', namespace, key: 'k0' }), false, 'deleting a missing key says so')
      t.equal(await store.ask({ type: 'get', namespace, key: 'k0' }), null)
    })

    await scoped('getMany answers in the order asked, null for missing keys', async namespace => {
      await store.ask({ type: 'set', namespace, key: 'x', value: 1 })
      await store.ask({ type: 'set', namespace, key: 'z', value: 3 })
      t.same(await store.ask({ type: 'getMany', namespace, keys: ['z', 'y', 'x'] }), [3, null, 1])
      t.same(await store.ask({ type: 'getMany', namespace, keys: [] }), [])
    })

    await scoped('setMany writes every entry, or none when one is bad', async namespace => {
      t.equal(await store.ask({ type: 'setMany', namespace, entries: [{ key: 'a', value: 1 }, { key: 'b', value: { two: 2 }, ttlMs: 60_000 }] }), null)
      t.same(await store.ask({ type: 'getMany', namespace, keys: ['a', 'b'] }), [1, { two: 2 }])
      const entries = [{ key: 'c', value: 3 }, { key: 'd', value: 'x'.repeat(17 * 1024 * 1024) }]
      await t.rejects(store.ask({ type: 'setMany', namespace, entries }), { code: 'value_too_large' })
      await t.rejects(store.ask({ type: 'setMany', namespace, entries: [{ key: 'e', value: 5 }, { key: '', value: 0 }] }), { code: 'invalid_key' })
      t.same(await store.ask({ type: 'getMany', namespace, keys: ['c', 'd', 'e'] }), [null, null, null], 'nothing of a refused batch was written')
    })

    await scoped('namespaces do not see each other', async namespace => {
      const other = freshNamespace()
      await store.ask({ type: 'set', namespace, key: 'shared', value: 'mine' })
      t.equal(await store.ask({ type: 'get', namespace: other, key: 'shared' }), null)
      t.same((await store.ask<KvPage>({ type: 'scan', namespace: other })).items, [])
    })

    await scoped('a value set with a TTL expires', async namespace => {
      await store.ask({ type: 'set', namespace, key: 'brief', value: 'soon gone', ttlMs: 150 })
      await store.ask({ type: 'set', namespace, key: 'stays', value: 'here' })
      t.equal(await store.ask({ type: 'get', namespace, key: 'brief' }), 'soon gone')
      await eventually(async () => (await store.ask({ type: 'get', namespace, key: 'brief' })) === null, 'the TTL to pass')
      t.same((await store.ask<KvPage>({ type: 'scan', namespace })).items.map(i => i.key), ['stays'], 'expired keys leave scans too')
    })

    await scoped('packed reads carry the stored msgpack: one value, or one array for getMany with nil where a key is missing or expired', async namespace => {
      const big = { text: 'x'.repeat(10_000), list: Array.from({ length: 50 }, (_, i) => i) }
      await store.ask({ type: 'setMany', namespace, entries: [{ key: 'a', value: { one: 1 } }, { key: 'big', value: big }, { key: 'brief', value: 'soon gone', ttlMs: 100 }, { key: 'n', value: null }] })
      t.same(unpack(await store.ask<Uint8Array>({ type: 'get', namespace, key: 'a', packed: true })), { one: 1 })
      t.equal(await store.ask({ type: 'get', namespace, key: 'missing', packed: true }), null)
      const keys = ['big', 'missing', 'a', 'brief', 'n', 'a']
      t.same(unpack(await store.ask<Uint8Array>({ type: 'getMany', namespace, keys, packed: true })), [big, null, { one: 1 }, 'soon gone', null, { one: 1 }])
      await eventually(async () => (await store.ask({ type: 'get', namespace, key: 'brief' })) === null, 'the TTL to pass')
      t.same(unpack(await store.ask<Uint8Array>({ type: 'getMany', namespace, keys, packed: true })), [big, null, { one: 1 }, null, null, { one: 1 }], 'an expired key reads as nil')
      const many = Array.from({ length: 300 }, (_, i) => `k${i}`)
      await store.ask({ type: 'setMany', namespace, entries: many.map((key, i) => ({ key, value: { i, pad: 'p'.repeat(i) } })) })
      t.same(unpack(await store.ask<Uint8Array>({ type: 'getMany', namespace, keys: many, packed: true })), many.map((_, i) => ({ i, pad: 'p'.repeat(i) })), 'past 16 and 255 entries, and past the first buffer')
      t.same(unpack(await store.ask<Uint8Array>({ type: 'getMany', namespace, keys: [], packed: true })), [])
    })

    await scoped('setManyPacked writes values encoded by the caller; a bad batch writes nothing', async namespace => {
      const values = [{ one: 1 }, 'two', [3]]
      const parts = values.map(value => pack(value))
      const bytes = Buffer.concat(parts)
      const ends = parts.map((_, i) => parts.slice(0, i + 1).reduce((sum, part) => sum + part.byteLength, 0))
      t.equal(await store.ask({ type: 'setManyPacked', namespace, keys: ['p1', 'p2', 'p3'], bytes, ends, ttlMs: [0, 60_000, 0] }), null)
      t.same(await store.ask({ type: 'getMany', namespace, keys: ['p1', 'p2', 'p3'] }), values)
      await t.rejects(store.ask({ type: 'setManyPacked', namespace, keys: ['q1', 'q2'], bytes, ends: [ends[0]!, bytes.byteLength + 1] }), { code: 'bad_message', message: /value 1 ends at/ })
      await t.rejects(store.ask({ type: 'setManyPacked', namespace, keys: ['q1', 'q2'], bytes, ends: [ends[0]!] }), { code: 'bad_message', message: /do not line up/ })
      await t.rejects(store.ask({ type: 'setManyPacked', namespace, keys: ['q1', ''], bytes, ends: ends.slice(0, 2) }), { code: 'invalid_key' })
      t.same(await store.ask({ type: 'getMany', namespace, keys: ['q1', 'q2'] }), [null, null], 'nothing of a refused batch was written')
    })

    await scoped('scan is ordered by key bytes and paginated with a cursor', async namespace => {
      const keys = ['a/3', 'a/1', 'a/10', 'a/2', 'a/é', 'a/z', 'b/1', 'a', 'a/😀']
      await Promise.all(keys.map((key, i) => store.ask({ type: 'set', namespace, key, value: i })))
      const seen: string[] = []
      let cursor: string | undefined
      let pages = 0
      do {
        const page: KvPage = await store.ask({ type: 'scan', namespace, prefix: 'a/', limit: 2, ...(cursor === undefined ? {} : { cursor }) })
        t.ok(page.items.length <= 2)
        seen.push(...page.items.map(i => i.key))
        cursor = page.cursor ?? undefined
        pages++
      } while (cursor !== undefined)
      const expected = keys.filter(k => k.startsWith('a/')).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
      t.same(seen, expected)
      t.equal(pages, Math.ceil(expected.length / 2))
      const first = await store.ask<KvPage>({ type: 'scan', namespace, prefix: 'a/', limit: 1 })
      t.same(first.items, [{ key: 'a/1', value: 1 }])
      await t.rejects(store.ask({ type: 'scan', namespace, prefix: 'b/', cursor: first.cursor! }), { code: 'bad_cursor' })
    })

    await scoped('bad input gets a typed error and changes nothing', async namespace => {
      await t.rejects(store.ask({ type: 'set', namespace, key: '', value: 1 }), { code: 'invalid_key' })
      await t.rejects(store.ask({ type: 'get', namespace, key: 'k'.repeat(600) }), { code: 'invalid_key' })
      await t.rejects(store.ask({ type: 'set', namespace, key: 'huge', value: 'x'.repeat(17 * 1024 * 1024) }), { code: 'value_too_large', message: new RegExp(`backend '${backend.args.name}'`) })
      t.equal(await store.ask({ type: 'get', namespace, key: 'huge' }), null)
      await t.rejects(store.ask({ type: 'drop-everything', namespace } as never), { code: 'bad_message' })
      await t.rejects(store.ask({ type: 'set', namespace: `${namespace}\u0000x`, key: 'k', value: 1 }), { code: 'invalid_key', message: /namespace/ })
    })

    if (backend.persistent) {
      // Last: it stops the store, and cleans up through the one it reopens.
      await t.test('a stop loses no acknowledged write: refused or durable, never silently dropped', async t => {
        const namespace = freshNamespace()
        const key = (i: number): string => `w${String(i).padStart(4, '0')}`
        const writes = Array.from({ length: 400 }, (_, i) => store.ask({ type: 'set', namespace, key: key(i), value: i }))
        const settled = Promise.allSettled(writes) // before the stop rejects any of them
        await system.stop(store)
        const outcomes = await settled
        const acknowledged = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []))
        const refusals = outcomes.flatMap(o => (o.status === 'rejected' ? [(o.reason as { code?: string }).code] : []))
        t.same(new Set(refusals), new Set(refusals.length ? ['stopped'] : []), `the ${refusals.length} writes not acknowledged were refused with stopped`)
        t.ok(acknowledged.length > 0, `${acknowledged.length} of 400 were acknowledged before the stop`)
        const reopened = await system.spawn(kvStore, { placement: 'pool', args: backend.args })
        const values = await reopened.ask<unknown[]>({ type: 'getMany', namespace, keys: acknowledged.map(key) })
        t.same(values, acknowledged, 'every acknowledged write is there after a restart')
        await clean(reopened, namespace)
      })
    }
  })
}

t.test('a server backend that cannot be reached fails the start with a typed error naming it', async t => {
  const system = await startSystem(t)
  await t.rejects(system.spawn(kvStore, { placement: 'pool', args: { name: 'cache', config: { type: 'kv_redis', url: 'redis://:secret@127.0.0.1:1' } } }), {
    code: 'backend_unavailable',
    message: /kv_redis backend 'cache' cannot reach redis:\/\/:\*\*\*@127\.0\.0\.1:1/,
  })
  await t.rejects(
    system.spawn(kvStore, { placement: 'pool', args: { name: 'meta', config: { type: 'kv_postgres', ...POSTGRES, port: 1, table_name: 'x' } } }),
    { code: 'backend_unavailable', message: /kv_postgres backend 'meta' cannot reach 127\.0\.0\.1:1\/test/ },
  )
})
