import { join } from 'node:path'
import t from 'tap'
import { ActorSystem } from '../../src/index.js'
import { tableStore } from '../../actors/stores/table-store.js'
import type { TableMessage } from '../../actors/stores/protocol.js'
import { stackWithOwners } from '../fixtures/owners.js'
import { tempDir } from '../fixtures/stack.js'
import { quietLogger } from '../fixtures/logger.js'
import { workerExecArgv } from '../fixtures/system.js'

type Answer = { status: number; body: any }
type Who = 'alice' | 'bob' | 'carol'

const hi = [{ role: 'user', content: 'hi' }]

/** Status, code and message of an answer, `id` replaced, so that a hidden record's answer compares with a missing one's. */
function seen(answer: Answer, id: string) {
  return { status: answer.status, code: answer.body?.error?.code, message: String(answer.body?.error?.message).replaceAll(id, '<id>') }
}

t.test('stored chat completions: each caller lists and reads only those the default policy lets them; another’s is 404 as a missing id', async t => {
  const s = await stackWithOwners(t, tempDir(t))
  const chat = async (who: Who): Promise<string> => {
    const answer = await s.call(who, 'POST', '/v1/chat/completions', { model: 'gpt', messages: hi })
    t.equal(answer.status, 200)
    return answer.body.id as string
  }
  const alices = [await chat('alice'), await chat('alice')]
  const bobs = [await chat('bob')]
  const listed = async (who: Who): Promise<string[]> => ((await s.call(who, 'GET', '/v1/chat/completions?order=asc')).body.data as Array<{ id: string }>).map(c => c.id)
  t.same(await listed('alice'), alices, 'alice: hers')
  t.same(await listed('bob'), bobs, 'bob: his')
  t.same(await listed('carol'), alices, "carol: alice's, whose team she shares")

  const [alice0] = alices
  t.match(await s.call('alice', 'GET', `/v1/chat/completions/${alice0}`), { status: 200, body: { id: alice0, input_messages: hi } })
  t.notMatch((await s.call('alice', 'GET', `/v1/chat/completions/${alice0}`)).body, { owner_principal: String }, 'the owner is not shown')
  const cases: Array<[string, (id: string) => string]> = [
    ['GET {id}', id => `/v1/chat/completions/${id}`],
    ['GET {id}/messages', id => `/v1/chat/completions/${id}/messages`],
    ['GET ?after={id}', id => `/v1/chat/completions?after=${id}`],
  ]
  for (const [what, path] of cases) {
    const hidden = seen(await s.call('bob', 'GET', path(alice0!)), alice0!)
    t.same(hidden, seen(await s.call('bob', 'GET', path('chatcmpl-missing')), 'chatcmpl-missing'), `${what}: alice's is answered to bob as a missing one`)
    t.match(hidden, { status: 404, code: 'not_found' })
  }
  t.match(await s.call('carol', 'GET', `/v1/chat/completions/${alice0}/messages`), { status: 200, body: { data: [{ role: 'user', content: 'hi' }] } })
})

t.test('paging over stored completions stays right when many unreadable ones lie between the readable', async t => {
  const s = await stackWithOwners(t, tempDir(t))
  const chat = async (who: Who): Promise<string> => (await s.call(who, 'POST', '/v1/chat/completions', { model: 'gpt', messages: hi })).body.id as string
  const alices: string[] = []
  alices.push(await chat('alice'))
  for (let i = 0; i < 30; i++) await chat('bob')
  alices.push(await chat('alice'))
  for (let i = 0; i < 30; i++) await chat('bob')
  alices.push(await chat('alice'))

  const first = await s.call('alice', 'GET', '/v1/chat/completions?order=asc&limit=2')
  t.match(first.body, { object: 'list', first_id: alices[0], last_id: alices[1], has_more: true })
  t.same(first.body.data.map((c: { id: string }) => c.id), alices.slice(0, 2), 'filled across 30 of bob’s')
  const second = await s.call('alice', 'GET', `/v1/chat/completions?order=asc&limit=2&after=${alices[1]}`)
  t.same(second.body.data.map((c: { id: string }) => c.id), [alices[2]])
  t.match(second.body, { first_id: alices[2], last_id: alices[2], has_more: false }, 'no more of hers, though bob’s follow none')
  const exact = await s.call('alice', 'GET', '/v1/chat/completions?order=desc&limit=3')
  t.same(exact.body.data.map((c: { id: string }) => c.id), [...alices].reverse())
  t.equal(exact.body.has_more, false, 'a page that takes the last readable one has no more')
  const one = await s.call('alice', 'GET', `/v1/chat/completions?order=desc&limit=1&after=${alices[2]}`)
  t.match(one.body, { first_id: alices[1], last_id: alices[1], has_more: true })
  const none = await s.call('carol', 'GET', '/v1/chat/completions?limit=5&model=llama')
  t.match(none.body, { data: [], first_id: null, last_id: null, has_more: false }, 'a filter that leaves nothing')
  const bobs = await s.call('bob', 'GET', '/v1/chat/completions?limit=100')
  t.equal(bobs.body.data.length, 60)
  t.equal(bobs.body.has_more, false)
})

t.test("conversations and their items: another's is 404 as a missing id for every route; a team mate's is readable", async t => {
  const s = await stackWithOwners(t, tempDir(t))
  const created = await s.call('alice', 'POST', '/v1/conversations', { metadata: { topic: 'x' }, items: [{ role: 'user', content: 'hello' }] })
  t.equal(created.status, 200)
  const id = created.body.id as string
  const items = await s.call('alice', 'GET', `/v1/conversations/${id}/items`)
  const itemId = items.body.data[0].id as string
  t.match(await s.call('carol', 'GET', `/v1/conversations/${id}`), { status: 200, body: { id, metadata: { topic: 'x' } } }, 'carol shares alice’s team')
  t.match(await s.call('carol', 'GET', `/v1/conversations/${id}/items/${itemId}`), { status: 200, body: { id: itemId } })

  const missing = 'conv_missing'
  const routes: Array<[string, string, (conv: string) => string, unknown?]> = [
    ['get', 'GET', conv => `/v1/conversations/${conv}`],
    ['update', 'POST', conv => `/v1/conversations/${conv}`, { metadata: { topic: 'y' } }],
    ['add items', 'POST', conv => `/v1/conversations/${conv}/items`, { items: [{ role: 'user', content: 'sneaky' }] }],
    ['list items', 'GET', conv => `/v1/conversations/${conv}/items`],
    ['get item', 'GET', conv => `/v1/conversations/${conv}/items/${itemId}`],
    ['delete item', 'DELETE', conv => `/v1/conversations/${conv}/items/${itemId}`],
    ['delete', 'DELETE', conv => `/v1/conversations/${conv}`],
  ]
  for (const [what, method, path, body] of routes) {
    const hidden = seen(await s.call('bob', method, path(id), body), id)
    t.same(hidden, seen(await s.call('bob', method, path(missing), body), missing), `${what}: answered to bob as a missing conversation`)
    t.match(hidden, { status: 404, code: 'not_found' })
  }
  t.match(await s.call('alice', 'GET', `/v1/conversations/${id}`), { status: 200, body: { metadata: { topic: 'x' } } }, 'bob changed nothing')
  t.same((await s.call('alice', 'GET', `/v1/conversations/${id}/items`)).body.data.map((i: { id: string }) => i.id), [itemId], 'nor added or deleted an item')
  t.match(await s.call('alice', 'DELETE', `/v1/conversations/${id}`), { status: 200, body: { deleted: true } })
})

t.test('an access_policy of its own: items filtered one by one with paging intact; reads of completions forbidden', async t => {
  const s = await stackWithOwners(t, tempDir(t), [
    { forbid: { actions: ['read'], resource: 'sql_record::chat_completions::*' }, description: 'completions are write-only' },
    { permit: { actions: ['create', 'read', 'update', 'delete'] }, when: 'user is owner' },
    { permit: { actions: ['read', 'update'], resource: 'sql_record::openai_conversations::*' }, when: 'user in owners teams' },
    { permit: { actions: ['read'], resource: 'model::*' } },
  ])
  const completion = await s.call('alice', 'POST', '/v1/chat/completions', { model: 'gpt', messages: hi })
  t.equal(completion.status, 200, 'chatting needs no read of the record it makes')
  t.match(await s.call('alice', 'GET', '/v1/chat/completions'), { status: 200, body: { data: [], has_more: false } }, 'not even alice lists hers')
  const own = await s.call('alice', 'GET', `/v1/chat/completions/${completion.body.id}`)
  t.same(seen(own, completion.body.id), seen(await s.call('alice', 'GET', '/v1/chat/completions/chatcmpl-missing'), 'chatcmpl-missing'), 'nor reads it: as a missing one')

  const id = (await s.call('alice', 'POST', '/v1/conversations', { items: [{ role: 'user', content: 'a1' }] })).body.id as string
  const add = async (who: Who, content: string) => {
    const answer = await s.call(who, 'POST', `/v1/conversations/${id}/items`, { items: [{ role: 'user', content }] })
    t.equal(answer.status, 200, `${who} adds ${content}`)
  }
  for (let i = 0; i < 15; i++) await add('carol', `c${i}`)
  await add('alice', 'a2')
  for (let i = 0; i < 15; i++) await add('carol', `c${15 + i}`)
  await add('alice', 'a3')
  const texts = (answer: Answer): string[] => answer.body.data.map((item: { content: Array<{ text: string }> }) => item.content[0]!.text)
  const first = await s.call('alice', 'GET', `/v1/conversations/${id}/items?order=asc&limit=2`)
  t.same(texts(first), ['a1', 'a2'], "alice's items only, across 15 of carol's")
  t.equal(first.body.has_more, true)
  const rest = await s.call('alice', 'GET', `/v1/conversations/${id}/items?order=asc&limit=2&after=${first.body.last_id}`)
  t.same(texts(rest), ['a3'])
  t.match(rest.body, { has_more: false, first_id: rest.body.data[0].id, last_id: rest.body.data[0].id })
  const carols = await s.call('carol', 'GET', `/v1/conversations/${id}/items?limit=100`)
  t.equal(carols.body.data.length, 30, 'carol reads the conversation (her team’s) and her own items')
  const carolsItem = carols.body.data[0].id as string
  const [hidden, absent] = [seen(await s.call('alice', 'GET', `/v1/conversations/${id}/items/${carolsItem}`), carolsItem), seen(await s.call('alice', 'GET', `/v1/conversations/${id}/items/item_missing`), 'item_missing')]
  t.same(hidden, absent, "carol's item is answered to alice as a missing one")
  t.same(
    seen(await s.call('alice', 'GET', `/v1/conversations/${id}/items?after=${carolsItem}`), carolsItem),
    seen(await s.call('alice', 'GET', `/v1/conversations/${id}/items?after=item_missing`), 'item_missing'),
    'and so is a list after it',
  )
  t.match(await s.call('carol', 'DELETE', `/v1/conversations/${id}`), { status: 403, body: { error: { code: 'forbidden' } } }, 'carol may read the conversation, not delete it')
  t.match(await s.call('bob', 'GET', `/v1/conversations/${id}`), { status: 404 })
})

t.test('deleting an item changes its conversation: it takes update on the conversation, as adding one does', async t => {
  const rules = (update: boolean) => [
    { permit: { actions: ['create', 'read', 'update', 'delete'] }, when: 'user is owner' },
    { permit: { actions: update ? ['read', 'update'] : ['read'], resource: 'sql_record::openai_conversations::*' }, when: 'user in owners teams' },
  ]
  const s = await stackWithOwners(t, tempDir(t), rules(true))
  const id = (await s.call('alice', 'POST', '/v1/conversations', { items: [{ role: 'user', content: 'a1' }] })).body.id as string
  const added = await s.call('carol', 'POST', `/v1/conversations/${id}/items`, { items: [{ role: 'user', content: 'c1' }] })
  t.equal(added.status, 200, 'carol may update the conversation of her team mate')
  const itemId = added.body.data[0].id as string
  s.write(rules(false))
  await s.restart()
  t.match(await s.call('carol', 'DELETE', `/v1/conversations/${id}/items/${itemId}`), { status: 403 }, 'her own item, in a conversation she may now read but not change')
  t.match(await s.call('carol', 'GET', `/v1/conversations/${id}/items/${itemId}`), { status: 200 }, 'she still reads it')
})

t.test('a store written before owners were recorded: its tables gain the columns, and its rows are unowned, readable by every caller', async t => {
  const dir = tempDir(t)
  const s = await stackWithOwners(t, dir, [], {
    // The tables as troupe made them before, with a row each, written by a table store of their own.
    beforeStart: async () => {
      const system = await ActorSystem.start({ workers: 1, logger: quietLogger(), execArgv: workerExecArgv() })
      try {
        const store = await system.spawn(tableStore, { placement: 'main', args: { name: 'sql', config: { type: 'sql_lmdb', path: join(dir, 'sql'), map_size_mb: 256 } } })
        const ask = (msg: TableMessage) => store.ask(msg)
        await ask({
          type: 'createTable',
          table: {
            name: 'inference_store',
            columns: { recorded: { type: 'integer' }, id: { type: 'text' }, created: { type: 'integer' }, model: { type: 'text' }, completion: { type: 'json' }, input_messages: { type: 'json' } },
            primaryKey: ['recorded', 'id'],
            indexes: [['id'], ['model', 'recorded']],
          },
        })
        const completion = { id: 'chatcmpl-old', object: 'chat.completion', created: 1, model: 'gpt', choices: [] }
        await ask({ type: 'insert', table: 'inference_store', row: { recorded: 1, id: 'chatcmpl-old', created: 1, model: 'gpt', completion, input_messages: hi } })
        await ask({ type: 'createTable', table: { name: 'conversations', columns: { id: { type: 'text' }, created_at: { type: 'integer' }, metadata: { type: 'json' } }, primaryKey: ['id'] } })
        await ask({
          type: 'createTable',
          table: { name: 'conversations_items', columns: { conversation_id: { type: 'text' }, seq: { type: 'integer' }, id: { type: 'text' }, item: { type: 'json' } }, primaryKey: ['conversation_id', 'seq'], indexes: [['conversation_id', 'id']] },
        })
        await ask({ type: 'insert', table: 'conversations', row: { id: 'conv_old', created_at: 1, metadata: {} } })
        await ask({ type: 'insert', table: 'conversations_items', row: { conversation_id: 'conv_old', seq: 1, id: 'msg_old', item: { id: 'msg_old', type: 'message', role: 'user', content: [] } } })
      } finally {
        await system.shutdown()
      }
    },
  })
  for (const who of ['alice', 'bob'] as const) {
    t.match(await s.call(who, 'GET', '/v1/chat/completions/chatcmpl-old'), { status: 200, body: { id: 'chatcmpl-old' } }, `${who} reads the old completion`)
    t.match(await s.call(who, 'GET', '/v1/conversations/conv_old/items/msg_old'), { status: 200, body: { id: 'msg_old' } }, `${who} reads the old item`)
  }
  const mine = (await s.call('alice', 'POST', '/v1/chat/completions', { model: 'gpt', messages: hi })).body.id as string
  const ids = async (who: Who) => ((await s.call(who, 'GET', '/v1/chat/completions?order=asc')).body.data as Array<{ id: string }>).map(c => c.id)
  t.same(await ids('alice'), ['chatcmpl-old', mine], 'new records are owned beside the old')
  t.same(await ids('bob'), ['chatcmpl-old'])
  t.match(await s.call('bob', 'POST', '/v1/conversations/conv_old', { metadata: { by: 'bob' } }), { status: 200, body: { metadata: { by: 'bob' } } }, 'an unowned conversation is anyone’s to update under the default policy')
})
