// Spawn a counter on a worker, supervise two more, and print the actor tree:
//   npm run build && node dist/examples/supervised-counters.js
import { ActorSystem } from 'troupe'
import { counterBehavior } from './counter.js'

const system = await ActorSystem.start({ workers: 2 })
const counter = await system.spawn(counterBehavior, { placement: 'pool', args: { start: 0 } })
await counter.ask({ type: 'add', n: 1 })
console.log('counter =', await counter.ask({ type: 'get' }))

const sup = await system.supervise({
  strategy: 'one_for_all',
  intensity: 3,
  periodMs: 5000,
  children: [
    { id: 'left', behavior: counterBehavior, args: { start: 10 }, placement: 'pool', restart: 'permanent', shutdownMs: 1000 },
    { id: 'right', behavior: counterBehavior, args: { start: 20 }, placement: 'dedicated', restart: 'permanent', shutdownMs: 1000 },
  ],
})
console.log('left + right =', (await sup.child('left').ask<number>({ type: 'get' })) + (await sup.child('right').ask<number>({ type: 'get' })))
console.log(JSON.stringify((await system.inspect()).root, null, 2))
await system.shutdown()
