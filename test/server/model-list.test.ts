import t, { type Test } from 'tap'
import { ActorError, type ActorRef } from '../../src/index.js'
import { ModelList } from '../../src/server/model-list.js'
import { modelsRoutingTable, type ModelListing, type ModelsMessage } from '../../actors/routing/models.js'
import { counter } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startSystem } from '../fixtures/system.js'

const idsOf = (served: { body: string }): string[] => (JSON.parse(served.body) as { data: Array<{ id: string }> }).data.map(m => m.id).sort()
const model = (id: string) => ({ model_id: id, provider_id: 'p', provider_model_id: 'upstream-model' })

async function routingTable(t: Test, placement: 'main' | 'pool'): Promise<ActorRef<ModelsMessage>> {
  const system = await startSystem(t)
  // The table only routes to the provider's ref; listing never reaches it.
  const provider = await system.spawn(counter, { args: { start: 0 } })
  const providers = [{ providerId: 'p', providerType: 'remote::openai', api: 'inference', ref: provider as unknown as ActorRef<never> }]
  return system.spawn(modelsRoutingTable, { placement, args: { providers, models: [model('seed')] } })
}

t.test('watching the routing table: the listing now, then after each change, with growing versions', async t => {
  const table = await routingTable(t, 'pool')
  const watch = table.stream<ModelListing>({ type: 'watch' })[Symbol.asyncIterator]()
  const first = (await watch.next()).value as ModelListing
  t.same(first.models.map(m => m.identifier), ['seed'])
  await table.ask({ type: 'register', model: model('added') })
  const second = (await watch.next()).value as ModelListing
  t.same(second.models.map(m => m.identifier).sort(), ['added', 'seed'])
  t.ok(second.version > first.version, 'a change raises the version')
  t.same(await table.ask<ModelListing>({ type: 'list' }), second, 'list answers the same listing')
  await t.rejects(table.ask({ type: 'watch' }), { code: 'bad_message' })
  await watch.return?.()
})

for (const placement of ['main', 'pool'] as const) {
  t.test(`the served model list follows the routing table on ${placement}`, async t => {
    const table = await routingTable(t, placement)
    const list = new ModelList(table, quietLogger())
    t.teardown(() => list.close())
    t.same(idsOf(await list.current()), ['seed'], 'the first list is asked for')

    // A write through the server refreshes before it answers: its client reads it at once.
    await table.ask({ type: 'register', model: model('through-server') })
    t.same(idsOf(await list.refresh()), ['seed', 'through-server'])
    t.same(idsOf(await list.current()), ['seed', 'through-server'])

    // A write made past the server shows once the watch brings it, without asking.
    await table.ask({ type: 'unregister', model_id: 'through-server' })
    await eventually(async () => idsOf(await list.current()).length === 1, 'the watch to bring the unregistration')
    t.same(idsOf(await list.current()), ['seed'])
  })
}

t.test('an older listing never replaces a newer one', async t => {
  const table = await routingTable(t, 'main')
  const list = new ModelList(table, quietLogger())
  t.teardown(() => list.close())
  const before = await list.current()
  await table.ask({ type: 'register', model: model('newer') })
  const after = await list.refresh()
  t.ok(after.version > before.version)
  // The watch may still deliver the listing from before the write: it must not win.
  await eventually(async () => idsOf(await list.current()).includes('newer'), 'the newer list')
  for (let i = 0; i < 20; i++) t.same(idsOf(await list.current()), ['newer', 'seed'])
})

t.test('after the routing table is gone the list is asked for, and the ask fails with its code', async t => {
  const system = await startSystem(t)
  const table = await system.spawn(modelsRoutingTable, { placement: 'main', args: { providers: [], models: [] } })
  const list = new ModelList(table, quietLogger())
  t.teardown(() => list.close())
  t.same(idsOf(await list.current()), [])
  await system.stop(table)
  await eventually(async () => {
    try {
      await list.current()
      return false
    } catch (error) {
      return error instanceof ActorError && error.code === 'no_such_actor'
    }
  }, 'the list to stop being served from a dead watch')
})
