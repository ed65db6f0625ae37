// The workflow the default stack serves as `approve`: the model drafts a paragraph on a topic,
// then the run waits (durably, up to a day) for a human to approve the draft.
//   npm run build && npm start
//   curl -s localhost:8321/workflows/approve/run-nowait -H 'content-type: application/json' \
//     -d '{"start_event": {"topic": "actors"}}'
// This module is imported by every thread that hosts the workflow, so it only defines things.
import { z } from 'zod'
import { defineWorkflow } from 'troupe'

const DAY_MS = 24 * 60 * 60 * 1000

export const approve = defineWorkflow(import.meta.url, 'approve', {
  description: 'Drafts a paragraph on a topic with the model, then waits for a human to approve it.',
  start: z.object({
    topic: z.string().min(1),
    // A provider_id/model id needs no registration, so the default stack (Ollama) serves it as is.
    model: z.string().min(1).default('ollama/llama3.2:3b'),
  }),
  stop: z.object({ text: z.string(), approved: z.boolean() }),
  events: {
    ProgressEvent: z.object({ msg: z.string() }),
    InputRequiredEvent: z.object({ prefix: z.string(), draft: z.string() }),
    HumanResponseEvent: z.object({ response: z.string() }),
  },
  async run({ topic, model }, ctx) {
    await ctx.emit('ProgressEvent', { msg: `drafting a paragraph on ${topic}` })
    // Inside a step, the model is called once: a run resumed after a crash reuses the draft.
    const draft = await ctx.step('draft', async () => {
      const completion = await ctx.chat({
        model,
        messages: [
          { role: 'system', content: 'Write one short, plain paragraph on the topic you are given.' },
          { role: 'user', content: topic },
        ],
      })
      return completion.choices[0]?.message.content ?? ''
    })
    await ctx.emit('ProgressEvent', { msg: 'draft ready, waiting for approval' })
    await ctx.emit('InputRequiredEvent', { prefix: 'Approve this draft? (yes/no)', draft })
    const answer = await ctx.waitFor('HumanResponseEvent', { timeoutMs: DAY_MS })
    return { text: draft, approved: /^\s*y(es)?\s*$/i.test(String(answer['response'] ?? '')) }
  },
})
