import t from 'tap'
import { Router } from '../../src/server/router.js'

const routes = [
  { method: 'GET', path: '/v1/models' },
  { method: 'GET', path: '/v1/models/{model_id}' },
  { method: 'DELETE', path: '/v1/models/{model_id}' },
  { method: 'GET', path: '/deployments/my.stack/handlers/{handler_id}' },
]
const router = new Router(routes)

t.test('a path without parameters is matched exactly, with its methods', async t => {
  t.match(router.match('GET', '/v1/models'), { route: routes[0], params: {} })
  t.match(router.match('POST', '/v1/models'), { route: undefined, allowed: ['GET'] })
  t.equal(router.match('GET', '/v1/nothing'), undefined)
})

t.test('parameters are captured and percent-decoded; another method lists the allowed ones', async t => {
  t.match(router.match('GET', '/v1/models/ollama%2Fllama3'), { route: routes[1], params: { model_id: 'ollama/llama3' } })
  t.match(router.match('PUT', '/v1/models/x'), { route: undefined, allowed: ['GET', 'DELETE'] })
})

t.test('the fixed parts of a path match literally: a dot in a deployment name is not any character', async t => {
  t.match(router.match('GET', '/deployments/my.stack/handlers/h1'), { route: routes[3], params: { handler_id: 'h1' } })
  t.equal(router.match('GET', '/deployments/myXstack/handlers/h1'), undefined)
})

t.test('a {name:path} parameter takes the rest of the path, slashes included; a {name} one, a single segment', async t => {
  const paths = new Router([
    { method: 'GET', path: '/v1/models/{model_id:path}' },
    { method: 'GET', path: '/v1/items/{item_id}' },
  ])
  t.match(paths.match('GET', '/v1/models/ollama/llama3.2:3b'), { params: { model_id: 'ollama/llama3.2:3b' } })
  t.match(paths.match('GET', '/v1/models/plain'), { params: { model_id: 'plain' } })
  t.match(paths.match('GET', '/v1/models/a%2Fb/c'), { params: { model_id: 'a/b/c' } })
  t.equal(paths.match('GET', '/v1/models/'), undefined, 'but never nothing')
  t.equal(paths.match('GET', '/v1/items/a/b'), undefined)
})
