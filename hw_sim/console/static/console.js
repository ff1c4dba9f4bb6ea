// alarmgw duty officer's console. Every element is built with createElement and
// textContent: names come from gateways and are never parsed as HTML.
"use strict";

(function () {
  const ALARM_TYPES = ["alarm", "tamper"];
  const DRILL_TYPES = ["drill", "test", "inspection_report"];
  const ACK_TYPES = ["alarm", "tamper", "drill", "test"];
  const TYPE_LABELS = {
    alarm: "报警 ALARM", tamper: "防拆 TAMPER", drill: "演练 DRILL", test: "测试 TEST",
    inspection_report: "巡检 INSPECTION", restore: "复位 restore", fault: "故障 fault",
    fault_cleared: "故障恢复 fault cleared", tamper_cleared: "防拆恢复 tamper cleared",
  };
  const PHASES = { pre: "报警前 pre-alarm", post: "报警后 post-alarm", request: "抓拍 requested" };
  const STEPS = {
    sounder_on: "现场警号已响 sounder on", sounder_failed: "警号失败 sounder failed",
    sms_sent: "已发短信 SMS sent", sms_failed: "短信失败 SMS failed",
  };
  const REASONS = { no_ack: "无人确认 not acknowledged", uplink_down: "链路中断 uplink down" };

  const cards = new Map();    // event id -> {data, node}
  const gateways = new Map(); // site/gateway -> node
  let clockSkew = 0;          // server time - browser time, in seconds
  let unseen = 0;
  let loaded = false;
  const baseTitle = document.title;
  const stats = { sounds: 0, alarmsSeen: 0 };
  window.alarmgwConsole = stats;

  function el(tag, cls, ...children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function now() { return Date.now() / 1000 + clockSkew; }

  function age(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " 秒 s";
    if (s < 3600) return Math.floor(s / 60) + " 分 min " + (s % 60) + " 秒 s";
    return Math.floor(s / 3600) + " 时 h " + Math.floor((s % 3600) / 60) + " 分 min";
  }

  function localTime(seconds) {
    return new Date(seconds * 1000).toLocaleString("zh-CN", { hour12: false });
  }

  function ageSpan(t) {
    const span = el("span", "age", age(now() - t));
    span.dataset.t = String(t);
    return span;
  }

  function tabOf(type) {
    if (ALARM_TYPES.includes(type)) return "alarms";
    if (DRILL_TYPES.includes(type)) return "drills";
    return "others";
  }

  function occurredSeconds(card) {
    const t = Date.parse(card.occurred_at);
    return card.time_synced && !Number.isNaN(t) ? t / 1000 : card.arrived;
  }

  // -- cards --------------------------------------------------------------------------------

  function picturesOf(card) {
    const box = el("div", "pictures");
    const cams = new Map();
    for (const exp of card.expected) cams.set(exp.camera, { name: exp.name, want: (exp.pre || 0) + (exp.post || 0), pics: [] });
    for (const p of card.pictures) {
      if (!cams.has(p.camera)) cams.set(p.camera, { name: p.camera, want: 0, pics: [] });
      cams.get(p.camera).pics.push(p);
    }
    for (const [camera, cam] of cams) {
      const shots = el("div", "shots");
      for (const p of cam.pics) {
        const caption = (PHASES[p.phase] || p.phase) + " " + p.shot;
        if (p.failed) {
          const f = el("div", "failed", "抓拍失败 failed: " + p.reason + (p.error ? " — " + p.error : ""));
          f.title = p.error || p.reason;
          f.dataset.reason = p.reason;
          shots.append(el("figure", "shot failed-shot", f, el("figcaption", null, caption)));
        } else if (p.url && p.url.startsWith("/api/picture/")) {
          const img = document.createElement("img");
          img.alt = camera + " " + caption;
          img.loading = "lazy";
          img.addEventListener("error", () => {
            img.replaceWith(el("div", "bad", "无法显示 cannot display"));
          });
          img.src = p.url;
          shots.append(el("figure", "shot", img, el("figcaption", null, caption + (p.taken_at ? " · " + p.taken_at : ""))));
        } else {
          shots.append(el("figure", "shot bad-shot", el("div", "bad", "不是JPEG图片 not a JPEG (" + p.size + " bytes)"),
            el("figcaption", null, caption)));
        }
      }
      const got = cam.pics.length;
      const title = el("h4", null, cam.name + (cam.name !== camera ? " (" + camera + ")" : ""),
        cam.want ? " · " + got + "/" + cam.want : "");
      box.append(el("div", "camera", title, shots));
    }
    return box;
  }

  function ackOf(card) {
    const row = el("div", "ack");
    const status = el("span", "ack-status");
    const a = card.ack;
    if (a && a.answered && a.ok) {
      status.classList.add("ok");
      status.append("已确认 acknowledged by " + a.operator + " · 往返 round trip " + a.rtt_ms + " ms · ");
      status.append(a.lamp ? "确认灯 lamp " + a.lamp + (a.lamp_on ? " 已亮 confirmed on" : " 未确认 NOT confirmed on")
        : "无确认灯 no ack lamp configured");
    } else if (a && a.answered) {
      status.classList.add("fail");
      status.append("确认被拒 acknowledgement refused: " + (a.error || "?"));
    } else if (a) {
      status.append("已发送 sent by " + a.operator + ", 等待网关 waiting for the gateway…");
    }
    if (!(a && a.answered && a.ok)) {
      const button = el("button", "ack-button", "确认接警 Acknowledge");
      button.type = "button";
      button.addEventListener("click", () => acknowledge(card.id, button, status));
      row.append(button);
    }
    row.append(status);
    return row;
  }

  function buildCard(card) {
    const drill = DRILL_TYPES.includes(card.type);
    const node = el("article", "card" + (drill ? " drill" : "") + (card.ack && card.ack.ok ? " acked" : ""));
    node.dataset.eventId = card.id;
    node.dataset.gateway = card.gateway;
    node.dataset.type = card.type;
    node.append(el("h3", null, el("span", "kind", TYPE_LABELS[card.type] || card.type),
      el("span", "point-name", card.point.name || card.point.id)));
    node.append(el("p", "meta", "位置 Location: ", el("b", "location", card.point.location || "-"),
      " · 网关 School/gateway: ", el("b", "gateway", card.gateway), " · seq " + card.seq,
      " · " + card.source + (card.startup ? " · 启动时已触发 active at gateway start" : "")));
    const when = el("p", "meta", "时间 Time: ", el("b", "occurred", card.occurred_at || "?"));
    if (!card.time_synced) {
      when.append(" ", el("span", "unsynced", "时钟未同步 clock not synced"),
        " 收到 received " + localTime(card.arrived));
    }
    when.append(" · 已过 age ", ageSpan(occurredSeconds(card)));
    node.append(when);
    if (card.expected.length || card.pictures.length) node.append(picturesOf(card));
    if (card.escalations.length) {
      const list = el("ul", "escalations");
      for (const e of card.escalations) {
        list.append(el("li", "escalation", "升级 escalation: " + (STEPS[e.step] || e.step) +
          (e.reason ? " (" + (REASONS[e.reason] || e.reason) + ")" : "") + (e.to ? " → …" + e.to : "") +
          (e.at ? " · " + e.at : "")));
      }
      node.append(list);
    }
    if (ACK_TYPES.includes(card.type)) node.append(ackOf(card));
    return node;
  }

  function buildLine(card) {
    const node = el("div", "line", el("span", "kind", TYPE_LABELS[card.type] || card.type), " ",
      el("span", "point-name", card.point.name || card.point.id), " · " + card.gateway + " seq " + card.seq +
      " · " + (card.occurred_at || "") + (card.time_synced ? "" : " (时钟未同步 clock not synced)"));
    node.dataset.eventId = card.id;
    node.dataset.gateway = card.gateway;
    node.dataset.type = card.type;
    return node;
  }

  function place(section, node, arrived) {
    section.querySelector(".empty")?.remove();
    for (const child of section.children) {
      const other = cards.get(child.dataset.eventId);
      if (other && other.data.arrived < arrived) { section.insertBefore(node, child); return; }
    }
    section.append(node);
  }

  function upsertCard(card) {
    const tab = tabOf(card.type);
    const node = tab === "others" ? buildLine(card) : buildCard(card);
    const old = cards.get(card.id);
    if (old) {
      old.node.replaceWith(node);
      old.node = node;
      old.data = card;
      return;
    }
    cards.set(card.id, { data: card, node });
    place(document.getElementById(tab), node, card.arrived);
    const counter = document.getElementById("count-" + tab);
    counter.textContent = String(Number(counter.textContent) + 1);
    if (loaded && ALARM_TYPES.includes(card.type)) announce(card);
  }

  // -- a new alarm: sound and title ---------------------------------------------------------

  let audio = null;
  function beep() {
    try {
      audio = audio || new AudioContext();
      const t = audio.currentTime;
      for (let i = 0; i < 3; i++) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = i % 2 ? 660 : 880;
        gain.gain.value = 0.2;
        osc.connect(gain).connect(audio.destination);
        osc.start(t + i * 0.25);
        osc.stop(t + i * 0.25 + 0.2);
      }
      stats.sounds += 1;
    } catch (e) {
      console.warn("cannot play the alarm sound", e);
    }
    document.body.dataset.sounds = String(stats.sounds);
  }

  function announce(card) {
    unseen += 1;
    stats.alarmsSeen += 1;
    document.title = "(" + unseen + ") 新警情 New alarm: " + (card.point.name || card.point.id).slice(0, 40) + " · " + baseTitle;
    beep();
  }

  function seen() {
    if (unseen) { unseen = 0; document.title = baseTitle; }
  }
  document.addEventListener("click", seen);
  document.addEventListener("keydown", seen);

  // -- acknowledge --------------------------------------------------------------------------

  const officer = document.getElementById("officer");
  officer.value = localStorage.getItem("alarmgw.officer") || "";
  officer.addEventListener("change", () => localStorage.setItem("alarmgw.officer", officer.value.trim()));

  async function acknowledge(eventId, button, status) {
    const name = officer.value.trim();
    if (!name) {
      status.className = "ack-status fail";
      status.textContent = "请先填写值班民警姓名 enter the officer's name first";
      officer.focus();
      return;
    }
    localStorage.setItem("alarmgw.officer", name);
    button.disabled = true;
    status.className = "ack-status";
    status.textContent = "发送中 sending…";
    try {
      const resp = await fetch("/api/ack", {
        method: "POST", headers: { "Content-Type": "application/json", "X-Alarmgw-Console": "1" },
        body: JSON.stringify({ event_id: eventId, operator: name }),
      });
      const answer = await resp.json();
      if (!answer.ok) throw new Error(answer.error || resp.statusText);
      status.textContent = "已发送 sent by " + name + ", 等待网关 waiting for the gateway…";
    } catch (e) {
      button.disabled = false;
      status.className = "ack-status fail";
      status.textContent = "发送失败 not sent: " + e.message;
    }
  }

  // -- gateways -----------------------------------------------------------------------------

  function upsertGateway(g) {
    const state = ["online", "offline"].includes(g.state) ? g.state : "unknown";
    const node = el("div", "gw");
    node.dataset.gatewayCard = g.gateway;
    node.dataset.state = state;
    const label = { online: "在线 online", offline: "离线 offline", unknown: "未知 unknown" }[state];
    node.append(el("h3", null, g.gateway, el("span", "presence " + state, label),
      state === "offline" && g.reason ? " " + g.reason : ""));
    const hb = el("p", "meta", "心跳 Last heartbeat: ");
    if (g.health_at) hb.append(ageSpan(g.health_at), " 前 ago"); else hb.append("无 none yet");
    node.append(hb);
    if (g.queue) {
      node.append(el("p", "meta", "队列 Queue: 报警 alarm " + g.queue.alarm + " · 事件 event " + g.queue.event +
        " · 图片 bulk " + g.queue.bulk));
    }
    node.append(el("p", "meta", "时钟 Clock: " + (g.time_synced === true ? "已同步 synced"
      : g.time_synced === false ? "未同步 NOT synced" : "?") + (g.version ? " · v" + g.version : "")));
    if (g.faults.length) {
      const list = el("ul", "faults");
      for (const f of g.faults) list.append(el("li", null, "故障 fault: " + (f.name || f.id) + (f.reason ? ": " + f.reason : "")));
      node.append(list);
    } else {
      node.append(el("p", "meta", "故障 Faults: 无 none"));
    }
    const box = document.getElementById("gateways");
    box.querySelector(".empty")?.remove();
    const old = gateways.get(g.gateway);
    if (old) old.replaceWith(node); else box.append(node);
    gateways.set(g.gateway, node);
  }

  // -- the stream ---------------------------------------------------------------------------

  function apply(update, initial) {
    if (typeof update.now === "number") clockSkew = update.now - Date.now() / 1000;
    const list = update.cards || [];
    // Oldest first, so that each lands above the ones before it.
    for (const c of (initial ? list.slice().reverse() : list)) upsertCard(c);
    for (const g of update.gateways || []) upsertGateway(g);
    if (typeof update.rejects === "number" && update.rejects > 0) {
      const r = document.getElementById("rejects");
      r.hidden = false;
      r.textContent = "已拒收的消息 messages refused as malformed: " + update.rejects;
    }
  }

  const link = document.getElementById("link");
  function connect() {
    const source = new EventSource("/api/stream");
    source.addEventListener("state", (ev) => {
      apply(JSON.parse(ev.data), true);
      loaded = true;
      link.className = "link up";
      link.textContent = "实时 live";
      document.body.dataset.ready = "1";
    });
    source.addEventListener("update", (ev) => apply(JSON.parse(ev.data), false));
    source.addEventListener("error", () => {
      link.className = "link down";
      link.textContent = "连接中断，重连中 reconnecting";
    });
  }

  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab.dataset.tab);
    });
  }
  setInterval(() => {
    for (const span of document.querySelectorAll(".age")) span.textContent = age(now() - Number(span.dataset.t));
  }, 1000);
  connect();
})();
