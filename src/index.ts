export * from './actor/index.js'
