// A behaviour module: every thread that hosts a counter imports it, so it only defines things.
import { z } from 'zod'
import { defineBehavior } from 'troupe'

export const counterProtocol = z.discriminatedUnion('type', [
  z.object({ type: z.literal('add'), n: z.number() }),
  z.object({ type: z.literal('get') }),
])

export const counterBehavior = defineBehavior(import.meta.url, 'counterBehavior', {
  protocol: counterProtocol,
  init: (args: { start: number }) => ({ n: args.start }),
  receive(state, msg) {
    if (msg.type === 'add') state.n += msg.n
    return state.n
  },
})
