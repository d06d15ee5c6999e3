// PoCL explorer: a single page over the node's JSON RPC and its /events WebSocket. Served by the node with
// a CSP allowing only this origin: no inline code, no other host, no library. Every value from the chain
// is put into the page as text (textContent), never parsed as HTML. See docs/explorer.md.
"use strict";

(() => {
  const LIST_ROUNDS = 256; // what /rounds, /miners and /accounts/{a}/rounds may read at most
  const LATEST_BLOCKS = 10;
  const LATEST_ROUNDS = 10;
  const ROUND_REFRESH_MS = 1500; // round/phase events refresh the overview's round data at most this often

  // ------------------------------------------------------------------ helpers

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    let resp;
    try {
      resp = await fetch(path, { headers: { Accept: "application/json" } });
    } catch (e) {
      throw new ApiError(0, "unreachable", `the node did not answer ${path} (${e.message})`);
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const err = body && body.error ? body.error : { code: "http_" + resp.status, message: resp.statusText };
      throw new ApiError(resp.status, err.code, err.message);
    }
    return body;
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "testid") el.dataset.testid = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const short = (s, n = 10) => (s && s.length > n + 4 ? s.slice(0, n) + "…" : s || "");
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const pct = (bps) => (bps === null || bps === undefined ? "–" : (bps / 100).toFixed(2) + " %");
  const ago = (ms) => {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : new Date(ms).toISOString();
  };

  const addrLink = (a, testid) =>
    a ? h("a", { href: `#/account/${a}`, class: "mono", title: a, testid }, short(a, 12)) : "–";
  const blockLink = (n) => h("a", { href: `#/block/${n}` }, fmtInt(n));
  const roundLink = (n) => h("a", { href: `#/round/${n}` }, `round ${n}`);
  const txLink = (hash, testid) => h("a", { href: `#/tx/${hash}`, class: "mono", title: hash, testid }, short(hash, 16));

  function stat(label, value, testid) {
    return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value", testid }, value));
  }

  function kv(pairs) {
    const dl = h("dl", { class: "kv" });
    for (const [k, v, testid] of pairs) dl.append(h("dt", {}, k), h("dd", { testid }, v));
    return dl;
  }

  function table(headers, rows, testid, rowTestid) {
    const t = h("table", { testid });
    t.append(h("thead", {}, h("tr", {}, headers.map((x) => (x.startsWith("#") ? h("th", { class: "num" }, x.slice(1)) : h("th", {}, x))))));
    const body = h("tbody");
    for (const r of rows) {
      body.append(h("tr", { testid: rowTestid }, r.map((c) => (c && c.num !== undefined ? h("td", { class: "num" }, c.num) : h("td", {}, c)))));
    }
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: headers.length, class: "notice" }, "none")));
    t.append(body);
    return t;
  }
  const num = (v) => ({ num: v });

  function card(title, ...children) {
    return h("section", { class: "card" }, h("h2", {}, title), ...children);
  }

  function pill(text, kind, testid) {
    return h("span", { class: `pill ${kind || ""}`, testid }, text);
  }

  // ------------------------------------------------------------------ page frame

  const main = document.getElementById("page");
  const errorBox = document.getElementById("error");
  let renderSeq = 0; // a page render superseded by a newer navigation stops writing

  function showError(err) {
    let text;
    if (err instanceof ApiError) {
      const what = err.status === 410 ? "Pruned on this node" : err.status === 404 ? "Not found" : "Error";
      text = `${what}: ${err.message}` + (err.code ? ` (${err.code})` : "");
    } else {
      text = `Error: ${err && err.message ? err.message : String(err)}`;
    }
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function setPage(name, ...children) {
    main.replaceChildren(...children);
    main.dataset.page = name;
    main.dataset.loaded = "true";
  }

  // ------------------------------------------------------------------ live state (WebSocket)

  const live = {
    height: null,
    lastTimeMs: null,
    intervalS: null,
    blocks: [], // newest first: {height, hash, time_ms, txs}
    listeners: new Set(),
    socket: null,
    retryMs: 1000,
  };

  function connectEvents() {
    const badge = document.getElementById("live");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let ws;
    try {
      ws = new WebSocket(`${scheme}://${location.host}/events`);
    } catch (e) {
      badge.textContent = "offline";
      return;
    }
    live.socket = ws;
    ws.onopen = () => {
      live.retryMs = 1000;
      badge.textContent = "live";
      badge.className = "live on";
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (msg.type === "block") {
        if (live.lastTimeMs !== null && msg.time_ms > live.lastTimeMs) live.intervalS = (msg.time_ms - live.lastTimeMs) / 1000;
        else if (msg.interval_s) live.intervalS = msg.interval_s;
        live.lastTimeMs = msg.time_ms;
        live.height = msg.height;
        live.blocks.unshift({ height: msg.height, hash: msg.hash, time_ms: msg.time_ms, txs: msg.txs });
        live.blocks.length = Math.min(live.blocks.length, LATEST_BLOCKS);
      }
      if (msg.type === "block" || msg.type === "round" || msg.type === "phase") {
        for (const fn of live.listeners) {
          try {
            fn(msg);
          } catch (e) {
            showError(e);
          }
        }
      }
    };
    ws.onclose = () => {
      badge.textContent = "reconnecting";
      badge.className = "live off";
      live.socket = null;
      setTimeout(connectEvents, live.retryMs);
      live.retryMs = Math.min(live.retryMs * 2, 15000);
    };
    ws.onerror = () => {}; // onclose follows and reconnects
  }

  // ------------------------------------------------------------------ overview

  function accuracyChart(rounds) {
    // G_{r-1}'s accuracy is round r's median baseline: plotted at model round r-1; the best candidate at r.
    const final = rounds.filter((r) => r.final && !r.void).sort((a, b) => a.round - b.round);
    const series = [
      final.filter((r) => r.baseline_median_bps !== null).map((r) => [r.round - 1, r.baseline_median_bps]),
      final.filter((r) => r.best_score_bps !== null).map((r) => [r.round, r.best_score_bps]),
    ];
    const ns = "http://www.w3.org/2000/svg";
    const W = 640, H = 240, L = 44, R = 12, T = 12, B = 28;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "global model accuracy per round");
    svg.dataset.testid = "accuracy-chart";
    const el = (tag, attrs, text) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      svg.append(e);
      return e;
    };
    const xs = series.flat().map((p) => p[0]);
    const x0 = Math.min(0, ...xs), x1 = Math.max(1, ...xs);
    const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const Y = (bps) => T + (1 - bps / 10000) * (H - T - B);
    for (let v = 0; v <= 10000; v += 2500) {
      el("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" });
      el("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, `${v / 100}%`);
    }
    el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" });
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" });
    const step = Math.max(1, Math.ceil((x1 - x0) / 12));
    for (let x = x0; x <= x1; x += step) el("text", { x: X(x), y: H - B + 16, "text-anchor": "middle" }, x);
    series.forEach((pts, i) => {
      if (!pts.length) return;
      el("polyline", { points: pts.map(([x, y]) => `${X(x)},${Y(y)}`).join(" "), class: `s${i}` });
      for (const [x, y] of pts) {
        const c = el("circle", { cx: X(x), cy: Y(y), r: 3, class: `p${i}` });
        const t = document.createElementNS(ns, "title");
        t.textContent = `${i === 0 ? "G_" + x : "best score, round " + x}: ${pct(y)}`;
        c.append(t);
      }
    });
    svg.dataset.points = String(series[0].length);
    const wrap = h("div", {}, svg);
    wrap.append(
      h(
        "div",
        { class: "legend" },
        h("span", { class: "k0" }, "global model G_r: median accuracy on the next round's voters' shards"),
        h("span", { class: "k1" }, "best miner score in round r"),
      ),
    );
    if (!final.length) wrap.append(h("p", { class: "notice" }, "No finalized round yet."));
    return wrap;
  }

  function roundRows(rounds) {
    return rounds.slice(0, LATEST_ROUNDS).map((r) => [
      roundLink(r.round),
      r.final ? (r.void ? pill("void", "warn") : pill("final", "good")) : pill(r.phase),
      num(`${r.committers}/${r.eligible}`),
      r.winners.length ? h("span", {}, r.winners.map((w, i) => [i ? ", " : "", addrLink(w)])) : "–",
      num(fmtInt(r.total_reward)),
      num(r.slashes),
      num(pct(r.best_score_bps)),
    ]);
  }

  function blockRows(blocks) {
    return blocks.map((b) => [blockLink(b.height), h("span", { class: "mono", title: b.hash }, short(b.hash, 16)), num(b.txs), ago(b.time_ms)]);
  }

  async function overview(seq) {
    const [status, validators, rounds] = await Promise.all([api("/status"), api("/validators"), api("/rounds?limit=" + LIST_ROUNDS)]);
    if (seq !== renderSeq) return;
    if (live.height === null || status.height > live.height) {
      live.height = status.height;
      live.lastTimeMs = status.latest_block_time_ms;
    }
    if (live.blocks.length < LATEST_BLOCKS && status.height > 0) {
      const lo = Math.max(status.earliest_block_height || 1, status.height - LATEST_BLOCKS + 1);
      const got = await Promise.all(
        Array.from({ length: status.height - lo + 1 }, (_, i) => api(`/blocks/${status.height - i}`).catch(() => null)),
      );
      if (seq !== renderSeq) return;
      const known = new Set(live.blocks.map((b) => b.height));
      for (const b of got) {
        if (b && !known.has(b.header.height)) live.blocks.push({ height: b.header.height, hash: b.hash, time_ms: b.header.time_ms, txs: b.num_txs });
      }
      live.blocks.sort((a, b) => b.height - a.height);
      live.blocks.length = Math.min(live.blocks.length, LATEST_BLOCKS);
      if (live.intervalS === null && live.blocks.length > 1) {
        const [a, b] = live.blocks;
        live.intervalS = (a.time_ms - b.time_ms) / 1000;
      }
    }

    const heightEl = h("span", { testid: "height" }, fmtInt(live.height));
    const intervalEl = h("span", { testid: "block-interval" }, live.intervalS === null ? "–" : `${live.intervalS.toFixed(2)} s`);
    const roundEl = h("span", { testid: "round-current" });
    const phaseEl = h("span", { testid: "round-phase" });
    const chartCard = card("Global model accuracy over rounds");
    const roundsCard = card("Latest rounds");
    const blocksCard = card("Latest blocks");

    function paintRounds(rv) {
      const current = rv.open_round || (rv.rounds[0] ? rv.rounds[0].round : 0);
      roundEl.replaceChildren(current ? roundLink(current) : "none yet");
      phaseEl.textContent = rv.open_round ? rv.phase : rv.rounds.length ? `done; next opens at ${fmtInt(rv.next_round_start)}` : `opens at ${fmtInt(rv.next_round_start)}`;
      chartCard.replaceChildren(h("h2", {}, "Global model accuracy over rounds"), accuracyChart(rv.rounds));
      roundsCard.replaceChildren(
        h("h2", {}, "Latest rounds"),
        table(["round", "status", "#committed", "winners", "#reward", "#slashed", "#best score"], roundRows(rv.rounds), "latest-rounds", "round-row"),
      );
    }
    function paintBlocks() {
      heightEl.textContent = fmtInt(live.height);
      intervalEl.textContent = live.intervalS === null ? "–" : `${live.intervalS.toFixed(2)} s`;
      blocksCard.replaceChildren(h("h2", {}, "Latest blocks"), table(["height", "hash", "#txs", "time"], blockRows(live.blocks), "latest-blocks", "block-row"));
    }
    paintRounds(rounds);
    paintBlocks();

    setPage(
      "overview",
      h("h1", {}, "Overview"),
      h(
        "div",
        { class: "grid" },
        stat("Chain", status.chain_id, "chain-id"),
        stat("Height", heightEl),
        stat("Block interval", intervalEl),
        stat("Peers", status.peers, "peers"),
        stat("Validators", validators.validators.length, "validators"),
        stat("PoCL round", roundEl),
        stat("Phase", phaseEl),
        stat(
          "Global model",
          rounds.model_round
            ? h("a", { href: `#/round/${rounds.model_round}`, class: "mono", title: rounds.model_hash, testid: "model-round" }, `G_${rounds.model_round}`)
            : h("span", { class: "mono", title: rounds.model_hash, testid: "model-round" }, "G_0 (genesis)"),
        ),
      ),
      chartCard,
      h("div", { class: "cols" }, blocksCard, roundsCard),
      card(
        "Validators",
        table(
          ["operator", "consensus address", "#power"],
          validators.validators.map((v) => [addrLink(v.operator), h("span", { class: "mono" }, short(v.address, 14)), num(fmtInt(v.power))]),
          "validator-list",
          "validator-row",
        ),
      ),
    );

    let pending = null;
    const listener = (msg) => {
      if (seq !== renderSeq) return;
      if (msg.type === "block") paintBlocks();
      if ((msg.type === "round" || msg.type === "phase") && pending === null) {
        pending = setTimeout(async () => {
          pending = null;
          if (seq !== renderSeq) return;
          try {
            paintRounds(await api("/rounds?limit=" + LIST_ROUNDS));
          } catch (e) {
            showError(e);
          }
        }, ROUND_REFRESH_MS);
      }
    };
    live.listeners.add(listener);
    return () => live.listeners.delete(listener);
  }

  // ------------------------------------------------------------------ block, tx

  function payloadView(payload) {
    return h("pre", { class: "evidence", testid: "tx-payload" }, JSON.stringify(payload, null, 2));
  }

  async function blockPage(seq, ref) {
    const b = await api(`/blocks/${encodeURIComponent(ref)}`);
    if (seq !== renderSeq) return;
    const hd = b.header;
    const txs = (b.txs || []).map((t) => [t.hash ? txLink(t.hash, "block-tx") : "(undecodable)", t.kind || "", addrLink(t.sender), num(fmtInt(t.fee)), num(fmtInt(t.size))]);
    setPage(
      "block",
      h("h1", {}, "Block ", h("span", { testid: "block-height" }, hd.height)),
      h("div", { class: "pager" }, hd.height > 1 ? h("a", { href: `#/block/${hd.height - 1}` }, "← previous") : "", h("a", { href: `#/block/${hd.height + 1}` }, "next →")),
      card(
        "Header",
        kv([
          ["Hash", h("span", { class: "mono" }, b.hash), "block-hash"],
          ["Time", `${new Date(hd.time_ms).toISOString()} (${ago(hd.time_ms)})`],
          ["Proposer", h("span", { class: "mono" }, hd.proposer)],
          ["Previous hash", hd.prev_hash ? h("a", { href: `#/block/${hd.prev_hash}`, class: "mono" }, hd.prev_hash) : "–"],
          ["State root", h("span", { class: "mono" }, hd.state_root)],
          ["Txs root", h("span", { class: "mono" }, hd.txs_root)],
          ["Round info", hd.round_info || "–"],
          ["Commit signatures", b.last_commit ? `${b.last_commit.signatures.length} (for block ${b.last_commit.height})` : "–"],
        ]),
      ),
      card(`Transactions (${b.num_txs})`, table(["hash", "kind", "sender", "#fee", "#bytes"], txs, "block-txs", "block-tx-row")),
    );
  }

  async function txPage(seq, hash) {
    const t = await api(`/txs/${encodeURIComponent(hash)}`);
    if (seq !== renderSeq) return;
    setPage(
      "tx",
      h("h1", {}, "Transaction"),
      card(
        "Summary",
        kv([
          ["Hash", h("span", { class: "mono" }, t.hash), "tx-hash"],
          ["Status", t.status === "committed" ? pill("committed", "good", "tx-status") : pill(t.status, "warn", "tx-status")],
          ["Block", t.height !== undefined ? blockLink(t.height) : "pending", "tx-height"],
          ["Index", t.index !== undefined ? t.index : "–"],
          ["Kind", t.kind, "tx-kind"],
          ["Sender", addrLink(t.sender, "tx-sender")],
          ["Nonce", t.nonce],
          ["Fee", fmtInt(t.fee)],
          ["Size", `${fmtInt(t.size)} bytes`],
          ["Chain", t.chain_id],
        ]),
      ),
      card("Payload", payloadView(t.payload)),
    );
  }

  // ------------------------------------------------------------------ account

  async function accountPage(seq, addr) {
    const [acct, history, txs] = await Promise.all([
      api(`/accounts/${encodeURIComponent(addr)}`),
      api(`/accounts/${encodeURIComponent(addr)}/rounds?rounds=${LIST_ROUNDS}`),
      api(`/txs?account=${encodeURIComponent(addr)}&limit=25`),
    ]);
    // /miners/{a} answers 404 for an address the chain never saw: only ask for accounts that exist
    const miner = acct.exists ? await api(`/miners/${encodeURIComponent(addr)}`) : null;
    if (seq !== renderSeq) return;
    const jailed = acct.jailed_until_round || acct.jailed_until_height;
    const totalRewards = history.rewards.reduce((s, r) => s + r.amount, 0);
    setPage(
      "account",
      h("h1", {}, "Account ", h("span", { class: "mono", testid: "account-address" }, acct.address)),
      acct.exists ? "" : h("p", { class: "notice", testid: "account-missing" }, "This address has no account on this chain yet."),
      h(
        "div",
        { class: "grid" },
        stat("Balance", fmtInt(acct.balance), "balance"),
        stat("Stake", fmtInt(acct.stake), "stake"),
        stat("Unbonding", fmtInt(acct.unbonding.reduce((s, u) => s + u.amount, 0)), "unbonding"),
        stat("Jail", jailed ? `until round ${acct.jailed_until_round} / height ${acct.jailed_until_height}` : "not jailed", "jail"),
        stat("Slashed in all", fmtInt(acct.slashed_total), "slashed-total"),
        stat("Rewards (shown rounds)", fmtInt(totalRewards), "rewards-total"),
        stat("Rounds won", history.wins.length, "wins"),
        stat("Nonce", acct.nonce, "nonce"),
      ),
      miner
        ? card(
            "As a miner",
            kv([
              ["Registered", miner.registered ? pill("yes", "good", "miner-registered") : pill("no", "", "miner-registered")],
              ["Eligible now", miner.eligible_now ? "yes" : "no"],
              ["Eligible next round", miner.eligible_next ? "yes" : `no: ${miner.not_eligible_reasons.join("; ")}`],
              ["Missed rounds in a row", `${miner.missed_rounds} of ${miner.max_missed_rounds}`],
            ]),
          )
        : "",
      acct.unbonding.length
        ? card("Unbonding", table(["#amount", "#released at height"], acct.unbonding.map((u) => [num(fmtInt(u.amount)), num(fmtInt(u.release_height))]), "unbonding-list"))
        : "",
      h(
        "div",
        { class: "cols" },
        card(
          `Rewards (rounds ${history.from_round}–${history.to_round})`,
          table(["round", "roles", "#amount"], history.rewards.map((r) => [roundLink(r.round), r.roles.join(", "), num(fmtInt(r.amount))]), "rewards", "reward-row"),
        ),
        card(
          "Slashes",
          table(
            ["round", "kind", "#slash", "#jail rounds", "evidence"],
            history.slashes.map((s) => [roundLink(s.round), pill(s.kind, "bad"), num(pct(s.slash_bps)), num(s.jail_rounds), h("pre", { class: "evidence" }, JSON.stringify(s.evidence))]),
            "slashes",
            "slash-row",
          ),
        ),
      ),
      card(
        `Transactions (blocks ${fmtInt(txs.from_height)}–${fmtInt(txs.to_height)})`,
        table(["hash", "block", "kind", "sender"], txs.txs.map((t) => [txLink(t.hash, "account-tx"), blockLink(t.height), t.kind, addrLink(t.sender)]), "account-txs", "account-tx-row"),
      ),
    );
  }

  // ------------------------------------------------------------------ round

  function heatColor(bps) {
    // red (0 %) -> yellow (50 %) -> green (100 %)
    const hue = Math.max(0, Math.min(120, (bps / 10000) * 120));
    return `hsl(${hue.toFixed(0)}, 70%, 72%)`;
  }

  function heatmap(m, winners, round) {
    const t = h("table", { class: "heatmap", testid: "heatmap" });
    t.append(
      h(
        "thead",
        {},
        h("tr", {}, h("th", {}, "predictor ↓ / shard of voter →"), m.columns.map((c) => h("th", { class: "num" }, addrLink(c)))),
      ),
    );
    const body = h("tbody");
    m.rows.forEach((row, i) => {
      const tr = h("tr", { testid: "heatmap-row" }, h("td", { class: winners.includes(row) ? "winner-row" : "" }, addrLink(row)));
      m.accuracy_bps[i].forEach((v, j) => {
        const td = h("td", { class: v === null ? "cell self" : "cell", testid: "heatmap-cell", title: `${row} on ${m.columns[j]}'s shard` }, v === null ? "—" : pct(v));
        if (v !== null) td.style.backgroundColor = heatColor(v);
        tr.append(td);
      });
      body.append(tr);
    });
    const base = h("tr", {}, h("td", { class: "notice" }, `G_${round - 1} (baseline)`));
    m.baseline_bps.forEach((v) => {
      const td = h("td", { class: "cell", testid: "baseline-cell" }, v === null ? "–" : pct(v));
      if (v !== null) td.style.backgroundColor = heatColor(v);
      base.append(td);
    });
    body.append(base);
    t.append(body);
    return t;
  }

  async function roundPage(seq, n) {
    const r = await api(`/rounds/${encodeURIComponent(n)}`);
    if (seq !== renderSeq) return;
    const p = r.participants;
    const status = r.final ? (r.void ? pill("void", "warn", "round-status") : pill("final", "good", "round-status")) : pill(`open: ${r.phase}`, "", "round-status");
    const scores = Object.entries(r.scores).sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1));
    const download = `/models/global?round=${r.round}&format=npz`;
    setPage(
      "round",
      h("h1", {}, "PoCL round ", h("span", { testid: "round-number" }, r.round), " ", status),
      h("div", { class: "pager" }, r.round > 1 ? h("a", { href: `#/round/${r.round - 1}` }, "← previous") : "", h("a", { href: `#/round/${r.round + 1}` }, "next →")),
      card(
        "Summary",
        kv([
          ["Phase", r.phase, "round-phase"],
          ["Heights", h("span", {}, "commit ", blockLink(r.start_height), r.shard_start ? [", shard ", blockLink(r.shard_start)] : "", r.predict_start ? [", predict ", blockLink(r.predict_start)] : "", r.vote_start ? [", vote ", blockLink(r.vote_start)] : "", r.end_height ? [", final ", blockLink(r.end_height)] : "")],
          ["Outcome", r.final ? (r.void ? `void: ${r.reason}` : r.reason || "new global model aggregated") : "not final yet", "round-outcome"],
          ["Global model", h("span", { class: "mono", testid: "model-hash" }, r.global_model_hash)],
          ["Download", r.final ? h("a", { href: download, testid: "model-download", download: `global-model-r${r.round}.npz` }, `G_${r.round} weights (.npz)`) : "after the round is final"],
          ["Previous model", h("span", { class: "mono" }, r.prev_model_hash)],
          ["Total reward", fmtInt(r.total_reward ?? 0), "round-total-reward"],
        ]),
      ),
      h(
        "div",
        { class: "cols" },
        card("Winners", r.winners.length ? h("ol", { testid: "winners" }, r.winners.map((w) => h("li", { testid: "winner" }, addrLink(w), `  gain over G_${r.round - 1}: ${pct(r.gains[w])}`))) : h("p", { class: "notice", testid: "winners" }, r.final ? "no winner" : "not final yet")),
        card("Median scores", table(["predictor", "#median accuracy"], scores.map(([a, s]) => [addrLink(a), num(pct(s))]), "scores", "score-row")),
      ),
      card(
        "Accuracy matrix (each predictor's model on each voter's held-out shard)",
        r.score_matrix ? heatmap(r.score_matrix, r.winners, r.round) : h("p", { class: "notice", testid: "heatmap-missing" }, "The matrix is computed when the round is final."),
      ),
      h(
        "div",
        { class: "cols" },
        card("Rewards", table(["miner", "role", "#amount"], r.rewards.map((x) => [addrLink(x.address), x.role, num(fmtInt(x.amount))]), "round-rewards", "round-reward-row")),
        card(
          "Penalties",
          table(
            ["miner", "kind", "#slash", "#jail rounds", "evidence"],
            r.slashes.map((s) => [addrLink(s.address), pill(s.kind, "bad"), num(pct(s.slash_bps)), num(s.jail_rounds), h("pre", { class: "evidence" }, JSON.stringify(s.evidence, null, 1))]),
            "round-slashes",
            "round-slash-row",
          ),
        ),
      ),
      card(
        "Participants",
        table(
          ["miner", "eligible", "committed", "shard", "predicted", "revealed", "voted"],
          p.eligible.concat(p.committers.filter((a) => !p.eligible.includes(a))).map((a) => [
            addrLink(a),
            p.eligible.includes(a) ? "✓" : "",
            p.committers.includes(a) ? "✓" : "",
            p.shard_owners.includes(a) ? "✓" : "",
            p.predictors.includes(a) ? "✓" : "",
            p.revealed.includes(a) ? "✓" : "",
            p.voters.includes(a) ? "✓" : "",
          ]),
          "participants",
          "participant-row",
        ),
      ),
    );
  }

  // ------------------------------------------------------------------ miners

  async function minersPage(seq) {
    const board = await api(`/miners?rounds=${LIST_ROUNDS}`);
    if (seq !== renderSeq) return;
    setPage(
      "miners",
      h("h1", {}, "Miners"),
      h("p", { class: "notice", testid: "board-range" }, board.rounds ? `Over the ${board.rounds} final rounds ${board.from_round}–${board.to_round} this node keeps.` : "No finalized round yet."),
      card(
        "Leaderboard",
        table(
          ["#", "miner", "#eligible", "#committed", "#wins", "#rewards", "#slashes", "#mean score", "#best", "#last"],
          board.miners.map((m, i) => [
            num(i + 1),
            addrLink(m.address, "board-address"),
            num(m.eligible),
            num(m.committed),
            num(m.wins),
            num(fmtInt(m.rewards)),
            num(m.slashes ? `${m.slashes} (${m.slash_kinds.join(", ")})` : 0),
            num(pct(m.mean_score_bps)),
            num(pct(m.best_score_bps)),
            num(pct(m.last_score_bps)),
          ]),
          "leaderboard",
          "miner-row",
        ),
      ),
    );
  }

  // ------------------------------------------------------------------ search and routing

  async function search(text) {
    const q = text.trim();
    if (!q) return;
    const r = await api(`/search?q=${encodeURIComponent(q)}`);
    const target = {
      block: `#/block/${r.height}`,
      tx: `#/tx/${r.hash}`,
      account: `#/account/${r.address}`,
      round: `#/round/${r.height}`,
    }[r.kind];
    if (target === undefined) showError(new ApiError(404, "", `nothing found for "${q}": ${r.message}`));
    else if (location.hash === target) route();
    else location.hash = target;
  }

  const routes = [
    [/^\/?$/, (seq) => overview(seq)],
    [/^\/block\/([0-9a-fA-Fx]+)$/, (seq, m) => blockPage(seq, m[1])],
    [/^\/tx\/([0-9a-fA-Fx]+)$/, (seq, m) => txPage(seq, m[1])],
    [/^\/account\/(0x[0-9a-fA-F]{40}|[0-9a-fA-F]{40})$/, (seq, m) => accountPage(seq, m[1])],
    [/^\/round\/([0-9]+)$/, (seq, m) => roundPage(seq, m[1])],
    [/^\/miners$/, (seq) => minersPage(seq)],
  ];

  let cleanup = null;

  async function route() {
    const seq = ++renderSeq;
    if (cleanup) {
      cleanup();
      cleanup = null;
    }
    clearError();
    main.dataset.loaded = "false";
    const path = decodeURIComponent(location.hash.replace(/^#/, ""));
    for (const [re, fn] of routes) {
      const m = path.match(re);
      if (!m) continue;
      main.dataset.page = "loading";
      try {
        const done = await fn(seq, m);
        if (seq === renderSeq && typeof done === "function") cleanup = done;
      } catch (e) {
        if (seq !== renderSeq) return;
        showError(e);
        setPage("error", h("p", { class: "notice" }, h("a", { href: "#/" }, "Back to the overview")));
      }
      return;
    }
    showError(new ApiError(404, "", `no explorer page ${path}: try #/block/12, #/tx/<hash>, #/account/<0x address>, #/round/3 or #/miners`));
    setPage("error", h("p", { class: "notice" }, h("a", { href: "#/" }, "Back to the overview")));
  }

  document.getElementById("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearError();
    search(document.getElementById("search-input").value).catch(showError);
  });
  window.addEventListener("hashchange", route);
  connectEvents();
  route();
})();
