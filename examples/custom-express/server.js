// The Functions page's --image example for an event trigger: an Express server that
// knows only POST /event (no /health). kipper-poll POSTs each row / item here.
// EVENT_LOG (optional) appends every event as one JSON line, so tests can see them.
const express = require('express')
const fs = require('fs')

const app = express()
app.use(express.json())

app.post('/event', (req, res) => {
  console.log('Processing:', req.body)
  if (process.env.EVENT_LOG) {
    fs.appendFileSync(process.env.EVENT_LOG, JSON.stringify(req.body) + '\n')
  }
  res.json({ ok: true })
})

const port = Number(process.env.PORT || 8080)
app.listen(port, '0.0.0.0', () => console.log(`listening on ${port}`))
