// End-to-end test of the chat demo in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core): two pages join a room and exchange messages both ways,
// lhttpd is reloaded (its old workers drain the pages with 1012), the pages show
// "reconnecting", come back on their own and keep chatting. Then the two browser
// examples of clients/js/README.md run as pasted (the console snippet, and the page,
// saved into the web root before the reload so that the new workers serve it).
//
// LH_SCENARIO=auth runs the demo with identity instead (a server with auth keys and the
// chat/team namespaces, and the demo users' tokens in demo-tokens.js, as `make run`
// serves it): alice signs in by URL, bob through the sign-in dialog, carol too; each
// sees the others' messages under the names lhttpd stamps (sender), a forged sender
// header changes nothing; bob's page loses its connection (its socket closed, and kept
// from reconnecting) while alice talks, and once back shows what she said meanwhile,
// once and in order (the SDK's recovery: chat.* keeps history); carol is refused the
// private room (403) and alice and bob talk in it; a page opened last shows
// #chat.lobby's last messages, from its history, in order.
// LH_SCENARIO=tls runs the plain demo over https:// (LH_BASE https://127.0.0.1:PORT, a
// TLS listener of lhttpd with a certificate of the test's CA): a Chromium that trusts
// nothing but its own store refuses the page (a certificate error); one told to accept
// exactly this certificate's key (--ignore-certificate-errors-spki-list with LH_SPKI, the
// base64 SHA-256 of the server certificate's SubjectPublicKeyInfo) loads it, its chat
// connects over wss:// and two pages talk both ways.
// Screenshots go to $LH_TEST_OUT/browser/.
//
// Run by tests/integration/browser.bats, which starts nats-server and lhttpd with
// static.root set to the demo. Environment:
//   LH_BASE      http://127.0.0.1:PORT (the lhttpd serving the demo)
//   LH_SCENARIO  "plain" (default), "auth" or "tls"
//   LH_SPKI      tls: the server certificate's SPKI hash (base64 SHA-256)
//   LHTTPD       plain: the lhttpd binary, for `lhttpd -s reload -c LH_CONF`
//   LH_CONF      plain: that server's configuration file
//   LH_WWW       plain: its static.root (the README's page example is written there)
//   LH_TEST_OUT  where screenshots go (default: a temporary directory)
//   CHROMIUM     browser binary (default /usr/bin/chromium)
// Prints one line per step; exits 0 when every step passed, 1 otherwise.
import { chromium } from 'playwright-core';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const base = process.env.LH_BASE;
const { LHTTPD, LH_CONF, LH_WWW } = process.env;
const scenario = process.env.LH_SCENARIO || 'plain';
if (!base || (scenario === 'plain' && (!LHTTPD || !LH_CONF || !LH_WWW)) ||
    (scenario === 'tls' && !process.env.LH_SPKI) || !['plain', 'auth', 'tls'].includes(scenario)) {
  console.error('chat.mjs: set LH_BASE, and LHTTPD, LH_CONF and LH_WWW (LH_SCENARIO plain), or LH_SCENARIO=auth, or LH_SCENARIO=tls and LH_SPKI');
  process.exit(2);
}
const outDir = path.join(process.env.LH_TEST_OUT || mkdtempSync(path.join(os.tmpdir(), 'lh-e2e-')), 'browser');
mkdirSync(outDir, { recursive: true });

// chromium.launch() gives the browser a fresh temporary profile (user-data-dir) of its
// own and removes it on close. Without the background-networking flags Chromium tries to reach Google's services,
// and this closed network refuses them noisily.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ROOM = 'e2e-room';
const WAIT = 10000;

const step = (what) => console.log(`step: ${what}`);

// The README's examples, with the server address of `make run` replaced by this one's.
const readme = readFileSync(fileURLToPath(new URL('../../clients/js/README.md', import.meta.url)), 'utf8');
function example(heading, lang) {
  const section = readme.slice(readme.indexOf(`## ${heading}`));
  const m = section.match(new RegExp('```' + lang + '\\n([\\s\\S]*?)```'));
  if (!m) throw new Error(`README.md: no ${lang} example under "${heading}"`);
  return m[1].replaceAll('ws://localhost:8081/ws', `${base.replace(/^http/, 'ws')}/ws`);
}
let browser;
let failed = false;
const pageErrors = [];

// Opens the chat as `nick` (?nick=, or ?user= with `query`); `connected` false returns
// before waiting for the connection (the sign-in dialog).
async function openChat(nick, { query = `nick=${encodeURIComponent(nick)}`, connected = true } = {}) {
  // One context per page: separate storage, like two people.
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${nick}: ${err.message}`));
  page.on('console', (msg) => {
    // The refused attempts while the test keeps a page offline are expected.
    if (msg.type() === 'error' && !msg.text().includes('ws://127.0.0.1:9/')) pageErrors.push(`${nick} console: ${msg.text()}`);
  });
  // A WebSocket that the test can cut: window.__gate.cut() closes the page's sockets and
  // sends its new ones to a closed port until window.__gate.offline is false again.
  await page.addInitScript(() => {
    const Real = window.WebSocket;
    const gate = { offline: false, sockets: new Set() };
    gate.cut = () => {
      gate.offline = true;
      for (const ws of gate.sockets) ws.close(4000, 'cut by the test');
    };
    window.__gate = gate;
    window.WebSocket = class extends Real {
      constructor(url, protocols) {
        super(gate.offline ? 'ws://127.0.0.1:9/ws' : url, protocols);
        gate.sockets.add(this);
        this.addEventListener('close', () => gate.sockets.delete(this));
      }
    };
  });
  // Every state the status shows, in order, recorded in the page.
  await page.addInitScript(() => {
    window.__states = [];
    document.addEventListener('DOMContentLoaded', () => {
      const el = document.getElementById('status');
      new MutationObserver(() => {
        const s = el.dataset.state;
        if (window.__states.at(-1) !== s) window.__states.push(s);
      }).observe(el, { attributes: true, attributeFilter: ['data-state'] });
    });
  });
  await page.goto(`${base}/${query ? `?${query}` : ''}`);
  if (connected) await page.waitForSelector('#status[data-state="open"]', { timeout: WAIT });
  return page;
}

// Waits for the notice that `nick` joined `room` (the presence message came back).
async function sawJoin(page, nick, room) {
  await page.waitForFunction(([n, r]) => [...document.querySelectorAll('#messages .notice')]
    .some((el) => el.textContent === `${n} joined #${r}.`), [nick, room], { timeout: WAIT });
}

// Joins a room through the form; returns once the page's own "joined" notice came back
// from the server, so the subscription is in place.
async function joinRoom(page, nick, room) {
  await page.fill('#room-input', room);
  await page.click('#join');
  await page.waitForSelector(`#rooms li.current[data-room="${room}"]`, { timeout: WAIT });
  await sawJoin(page, nick, room);
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  // Delivered back by the server: no longer "sending".
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages .msg.mine')]
    .some((li) => li.querySelector('.text').textContent === t && !li.classList.contains('pending')), text, { timeout: WAIT });
}

async function sees(page, from, text) {
  await page.waitForFunction(([f, t]) => [...document.querySelectorAll('#messages .msg:not(.mine)')]
    .some((li) => li.querySelector('.nick').textContent === f && li.querySelector('.text').textContent === t),
  [from, text], { timeout: WAIT });
  const time = await page.evaluate(([f, t]) => {
    const li = [...document.querySelectorAll('#messages .msg')].find((x) => x.querySelector('.text').textContent === t);
    return li.querySelector('time').textContent;
  }, [from, text]);
  if (!/\d/.test(time)) throw new Error(`message "${text}" shows no time: ${JSON.stringify(time)}`);
}

async function plain() {
  const ann = await openChat('ann');
  const bob = await openChat('bob');
  if (await ann.isVisible('#user-label') || await ann.isVisible('#signin') || !(await ann.isVisible('#nick-label'))) {
    throw new Error('without demo users the page should ask for a nickname only');
  }
  step('both pages loaded from lhttpd and connected');

  await joinRoom(ann, 'ann', ROOM);
  await joinRoom(bob, 'bob', ROOM);
  await ann.waitForFunction((r) => [...document.querySelectorAll('#messages .notice')]
    .some((n) => n.textContent === `bob joined #${r}.`), ROOM, { timeout: WAIT });
  step(`both joined #${ROOM}; ann saw bob join`);

  await say(ann, 'Hello from ann, ça va?');
  await sees(bob, 'ann', 'Hello from ann, ça va?');
  await say(bob, 'Hi ann, bob here: héllo');
  await sees(ann, 'bob', 'Hi ann, bob here: héllo');
  step('messages went both ways, with sender and time');

  writeFileSync(path.join(LH_WWW, 'hello.html'), example('In a page', 'html'));
  const r = spawnSync(LHTTPD, ['-s', 'reload', '-c', LH_CONF], { encoding: 'utf8', timeout: 15000 });
  if (r.status !== 0) throw new Error(`lhttpd -s reload exited ${r.status}: ${r.stdout}${r.stderr}`);
  step('lhttpd reloaded');

  for (const page of [ann, bob]) {
    await page.waitForFunction(() => {
      const el = document.getElementById('status');
      return el.dataset.state === 'open' && Number(el.dataset.opens) >= 2;
    }, null, { timeout: WAIT });
    const states = await page.evaluate(() => window.__states);
    if (!states.includes('reconnecting')) throw new Error(`the page never showed reconnecting: ${states}`);
  }
  step('both pages showed "reconnecting" and are connected again');

  await say(ann, 'Still here after the reload');
  await sees(bob, 'ann', 'Still here after the reload');
  await say(bob, 'Me too');
  await sees(ann, 'bob', 'Me too');
  step('messages went both ways after the reload');

  await ann.evaluate(`(async () => { ${example('Try it in 30 seconds', 'js')} })()`);
  await bob.click('#rooms li[data-room="lobby"] button');
  await sees(bob, 'console', 'hello from the console');
  step("the README's console example works as pasted");

  const hello = await (await browser.newContext()).newPage();
  hello.on('pageerror', (err) => pageErrors.push(`hello.html: ${err.message}`));
  await hello.goto(`${base}/hello.html`);
  await hello.waitForFunction(() => document.getElementById('log').textContent.includes('#lobby page: hello from a page'), null, { timeout: WAIT });
  await sees(bob, 'page', 'hello from a page');
  step("the README's page example, added before the reload, is served and works");

  await ann.screenshot({ path: path.join(outDir, 'chat-ann.png') });
  await bob.screenshot({ path: path.join(outDir, 'chat-bob.png') });
  step(`screenshots in ${outDir}`);
}

// The demo with identity: names from the server, a private room that refuses outsiders.
async function signedIn() {
  const LOBBY = 'chat.lobby';
  const PRIVATE = 'team.secret';
  const alice = await openChat('alice', { query: 'user=alice' });
  // bob picks his name in the sign-in dialog, which comes when no user is chosen.
  const bob = await openChat('bob', { query: '', connected: false });
  await bob.waitForSelector('#signin:not([hidden]) #signin-users button[data-user="bob"]', { timeout: WAIT });
  await bob.click('#signin-users button[data-user="bob"]');
  await bob.waitForSelector('#status[data-state="open"]', { timeout: WAIT });
  const carol = await openChat('carol', { query: 'user=carol' });
  for (const [page, user] of [[alice, 'alice'], [bob, 'bob'], [carol, 'carol']]) {
    await page.waitForSelector(`#whoami[data-user="${user}"]`, { timeout: WAIT });
    await page.waitForSelector(`#rooms li.current[data-room="${LOBBY}"]`, { timeout: WAIT });
  }
  if (await alice.isVisible('#nick-label') || !(await alice.isVisible('#user-label'))) {
    throw new Error('signed in: the page should show the user picker, not the nickname');
  }
  step('alice (by URL), bob (sign-in dialog) and carol signed in; the server names each in its auth reply');

  await sawJoin(alice, 'bob', LOBBY);
  await sawJoin(alice, 'carol', LOBBY);
  await sawJoin(bob, 'carol', LOBBY);
  await say(alice, 'Hello from alice');
  await sees(bob, 'alice', 'Hello from alice');
  await sees(carol, 'alice', 'Hello from alice');
  await say(bob, 'Hi alice, bob here');
  await sees(alice, 'bob', 'Hi alice, bob here');
  step(`#${LOBBY}: each sees the others' messages under their server-stamped names`);

  // bob's page claims to be alice: the server replaces the sender header.
  await bob.evaluate(() => window.lhttpChat.client.publish('chat.lobby', 'I am alice, honest', {
    command: 'chat', headers: { sender: 'alice', nick: 'alice', id: 'forged-1', time: Date.now() },
  }));
  await sees(alice, 'bob', 'I am alice, honest');
  step('a forged sender header shows the real sender (bob)');

  // bob's page is cut off while alice talks; back, it shows what it missed.
  await bob.evaluate(() => window.__gate.cut());
  await bob.waitForSelector('#status[data-state="reconnecting"]', { timeout: WAIT });
  const away = ['While bob is away, 1', 'While bob is away, 2', 'While bob is away, 3'];
  for (const text of away) await say(alice, text);
  await sees(carol, 'alice', away[2]);
  const bobBefore = await chatTexts(bob);
  if (bobBefore.some((t) => away.includes(t))) throw new Error(`bob's page got messages while cut off: ${bobBefore}`);
  await bob.evaluate(() => { window.__gate.offline = false; });
  await bob.waitForFunction(() => {
    const el = document.getElementById('status');
    return el.dataset.state === 'open' && Number(el.dataset.opens) >= 2;
  }, null, { timeout: WAIT });
  await sees(bob, 'alice', away[2]);
  const lobby = [...bobBefore, ...away];
  const bobAfter = await chatTexts(bob);
  if (JSON.stringify(bobAfter) !== JSON.stringify(lobby)) {
    throw new Error(`bob's page after the reconnection: ${JSON.stringify(bobAfter)}, not ${JSON.stringify(lobby)}`);
  }
  const reloaded = await bob.evaluate(() => [...document.querySelectorAll('#messages .notice')]
    .some((el) => el.textContent.includes('could not be recovered')));
  if (reloaded) throw new Error('bob\'s page had to reload the room from its history: the recovery failed');
  step(`bob's page, cut off while alice said ${away.length} messages, shows each of them once, in order, once back`);

  await carol.fill('#room-input', PRIVATE);
  await carol.click('#join');
  await carol.waitForFunction((r) => {
    const el = document.getElementById('join-error');
    return !el.hidden && el.dataset.code === '403' && el.textContent.includes(`#${r}`);
  }, PRIVATE, { timeout: WAIT });
  const carolRooms = await carol.evaluate(() => [...document.querySelectorAll('#rooms li')].map((li) => li.dataset.room));
  if (carolRooms.includes(PRIVATE)) throw new Error(`carol still lists #${PRIVATE}: ${carolRooms}`);
  const refusal = await carol.evaluate(() => document.getElementById('join-error').textContent);
  step(`carol is refused #${PRIVATE}: ${refusal}`);

  await joinRoom(alice, 'alice', PRIVATE);
  await joinRoom(bob, 'bob', PRIVATE);
  await sawJoin(alice, 'bob', PRIVATE);
  await say(alice, 'Just us here');
  await sees(bob, 'alice', 'Just us here');
  await say(bob, 'Indeed');
  await sees(alice, 'bob', 'Indeed');
  step(`alice and bob talk in #${PRIVATE}`);

  // The online list (lhttpd's presence): in #team.secret (join_leave) alice and bob see
  // each other; bob leaves the room and alice's list drops him at once (a leave event).
  const onlineIs = (page, users) => page.waitForFunction((u) => {
    const el = document.getElementById('online');
    return !el.hidden && el.dataset.users === u;
  }, users, { timeout: WAIT });
  await onlineIs(alice, 'alice bob');
  await onlineIs(bob, 'alice bob');
  step(`the online list of #${PRIVATE} shows alice and bob on both pages`);
  await bob.click('#leave');
  await onlineIs(alice, 'alice');
  step(`bob leaves #${PRIVATE}: alice's online list shows only alice`);

  // A page opened now shows the lobby's last messages, from its history, in order.
  const late = await openChat('carol (late)', { query: 'user=carol' });
  await late.waitForSelector(`#rooms li.current[data-room="${LOBBY}"]`, { timeout: WAIT });
  await late.waitForFunction((n) => document.querySelectorAll('#messages .msg.old').length >= n, lobby.length, { timeout: WAIT });
  const shown = await chatTexts(late);
  if (JSON.stringify(shown) !== JSON.stringify(lobby)) {
    throw new Error(`a page opened last shows ${JSON.stringify(shown)}, not the lobby's ${JSON.stringify(lobby)}`);
  }
  step(`a page opened last shows #${LOBBY}'s ${lobby.length} messages from its history, in order`);

  await alice.screenshot({ path: path.join(outDir, 'chat-alice.png') });
  await carol.screenshot({ path: path.join(outDir, 'chat-carol.png') });
  step(`screenshots in ${outDir}`);
}

// LH_SCENARIO=tls: the chat over https:// and wss://, the certificate trusted by its key
// only (the browser was launched with --ignore-certificate-errors-spki-list).
async function overTls() {
  // First a browser without that flag: the test CA is in no store it knows.
  const strict = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS, timeout: 30000,
  });
  try {
    const p = await (await strict.newContext()).newPage();
    const err = await p.goto(`${base}/`).then(() => null, (e) => e.message);
    if (!err || !/ERR_CERT/.test(err)) throw new Error(`a browser without the test CA loaded ${base}/ (${err})`);
    step(`without the certificate trusted the page is refused: ${err.match(/net::ERR_CERT_[A-Z_]+/)?.[0] ?? err}`);
  } finally {
    await strict.close().catch(() => {});
  }

  const ann = await openChat('ann');
  const bob = await openChat('bob');
  for (const page of [ann, bob]) {
    const where = await page.evaluate(() => ({
      page: location.protocol, sockets: [...window.__gate.sockets].map((ws) => new URL(ws.url).protocol),
    }));
    if (where.page !== 'https:' || where.sockets.length === 0 || where.sockets.some((p) => p !== 'wss:')) {
      throw new Error(`expected an https page with wss sockets: ${JSON.stringify(where)}`);
    }
  }
  step('both pages loaded over https:// and connected over wss://');
  await joinRoom(ann, 'ann', ROOM);
  await joinRoom(bob, 'bob', ROOM);
  await ann.waitForFunction((r) => [...document.querySelectorAll('#messages .notice')]
    .some((n) => n.textContent === `bob joined #${r}.`), ROOM, { timeout: WAIT });
  step(`both joined #${ROOM} over TLS; ann saw bob join`);
  await say(ann, 'Hello over TLS from ann, ça va?');
  await sees(bob, 'ann', 'Hello over TLS from ann, ça va?');
  await say(bob, 'Hi ann, bob here, encrypted: héllo');
  await sees(ann, 'bob', 'Hi ann, bob here, encrypted: héllo');
  step('messages went both ways over wss://');
  await ann.screenshot({ path: path.join(outDir, 'chat-tls.png') });
}

// The texts of the chat messages the page shows in the current room, in order.
async function chatTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll('#messages .msg .text')].map((el) => el.textContent));
}

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: scenario === 'tls' ? [...ARGS, `--ignore-certificate-errors-spki-list=${process.env.LH_SPKI}`] : ARGS,
    timeout: 30000,
  });
  step(`chromium ${browser.version()}`);

  if (scenario === 'auth') await signedIn();
  else if (scenario === 'tls') await overTls();
  else await plain();

  if (pageErrors.length) throw new Error(`errors in the pages:\n${pageErrors.join('\n')}`);
  console.log('e2e: all steps passed');
} catch (err) {
  failed = true;
  console.error(`e2e: FAILED: ${err.stack || err}`);
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join('\n')}`);
  try {
    for (const [i, ctx] of (browser?.contexts() ?? []).entries()) {
      for (const p of ctx.pages()) await p.screenshot({ path: path.join(outDir, `failure-${i}.png`) });
    }
  } catch { /* the browser may be gone */ }
} finally {
  await browser?.close().catch(() => {});
}
process.exit(failed ? 1 : 0);
