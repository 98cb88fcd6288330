// Plays low-latency streams in headless Chromium and prints one JSON report.
//
//   node run.js '<json>'
//
// json: { "kind": "hls" | "dash", "duration": seconds,
//         "targets": [ { "label": "edge", "base": "http://127.0.0.1:PORT", "pages": 1, "players": 1 } ],
//         "startLevel": 1, "switches": [ { "at": 12, "level": 0 } ],
//         "videoWidth": 160 }
//
// Every target's pages load BASE/player/KIND.html and play BASE/master.m3u8
// (hls) or BASE/manifest.mpd (dash); all pages play at the same time, in one
// browser. A target may load its page from another origin than the stream's
// ("page": "http://127.0.0.1:PORT"), name the stream's full URL ("src"), and
// have the page fetch one URL ("probe"), reporting "ok:STATUS" or "error:...":
// how a page sees a cross-origin request its browser refused. Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); no browser
// is ever downloaded.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

async function main() {
  const cfg = JSON.parse(process.argv[2] || '{}');
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath} (Debian: apt-get install -y chromium; scripts/test.sh installs it)`);
  }
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    throw new Error('playwright-core is not installed: run `npm ci` in tests/players (scripts/test.sh does)');
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mediaedge-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'],
  });
  const consoleErrors = [];
  const pages = [];
  try {
    for (const t of cfg.targets) {
      for (let i = 0; i < (t.pages || 1); i++) {
        const page = await context.newPage();
        page.on('console', m => { if (m.type() === 'error' && consoleErrors.length < 50) consoleErrors.push(`${t.label}: ${m.text()}`); });
        page.on('pageerror', e => { if (consoleErrors.length < 50) consoleErrors.push(`${t.label}: ${e.message}`); });
        await page.goto(`${t.page || t.base}/player/${cfg.kind}.html`);
        pages.push({ label: t.label, page });
      }
    }
    const src = cfg.kind === 'hls' ? 'master.m3u8' : 'manifest.mpd';
    // Every page starts its players at the same moment (one clock, one
    // machine), not one page after the other: where a live player starts
    // depends on when it asks.
    const startAt = Date.now() + 200 + 20 * pages.length;
    for (const p of pages) {
      const t = cfg.targets.find(t => t.label === p.label);
      if (t.players === 0) continue;
      await p.page.evaluate(c => {
        setTimeout(() => window.startPlayers(c), Math.max(0, c.startAt - Date.now()));
      }, {
        src: t.src || `${t.base}/${src}`, players: t.players || 1,
        startLevel: cfg.startLevel, switches: cfg.switches || [], liveDelay: cfg.liveDelay,
        videoWidth: cfg.videoWidth, startAt,
      });
    }
    const started = startAt;
    await new Promise(r => setTimeout(r, Math.max(0, startAt - Date.now()) + cfg.duration * 1000));
    const results = [];
    for (const p of pages) {
      const t = cfg.targets.find(t => t.label === p.label);
      const probe = t.probe
        ? await p.page.evaluate(u => fetch(u).then(r => `ok:${r.status}`, e => `error:${e.message}`), t.probe)
        : undefined;
      results.push({ label: p.label, players: await p.page.evaluate(() => window.report()), probe });
    }
    process.stdout.write(JSON.stringify({ started, ended: Date.now(), results, consoleErrors }) + '\n');
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch(e => {
  process.stderr.write(`run.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
