// The API server prewakes the inference providers' threads when an inference request arrives,
// before it reads the body, and for no other route.
import t from 'tap'
import { ApiServer } from '../../src/server/server.js'
import type { ModelsMessage } from '../../actors/routing/models.js'
import type { ActorRef } from '../../src/index.js'
import { counter } from '../fixtures/behaviors.js'
import { quietLogger } from '../fixtures/logger.js'
import { startSystem } from '../fixtures/system.js'

t.test('inference routes prewake on arrival, even when the body then fails; other routes do not', async t => {
  const system = await startSystem(t, { workers: 0 })
  // No inference request here gets as far as the routing table: every body below is refused.
  const models = (await system.spawn(counter, { placement: 'main' })) as unknown as ActorRef<ModelsMessage>
  let prewakes = 0
  const api = new ApiServer({ system, models, imageName: 'test', version: '0.0.0', log: quietLogger(), maxBodyBytes: 1024, prewakeInference: () => prewakes++ })
  const url = await api.listen(0, '127.0.0.1')
  t.teardown(() => api.close())
  const post = (path: string, body: string): Promise<number> => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(r => r.status)

  t.equal(await post('/v1/chat/completions', '{"model": '), 400)
  t.equal(prewakes, 1, 'chat completions: before the body is read, so an unreadable body still counts')
  t.equal(await post('/v1/completions', '{}'), 400)
  t.equal(await post('/v1/embeddings', '{}'), 400)
  t.equal(prewakes, 3, 'completions and embeddings too')

  t.equal((await fetch(`${url}/v1/version`)).status, 200)
  t.equal(await post('/v1/conversations', '{}'), 404)
  t.equal(await post('/v1/models', '{}'), 400)
  t.equal((await fetch(`${url}/v1/nowhere`)).status, 404)
  t.equal(prewakes, 3, 'no other route prewakes')
})
