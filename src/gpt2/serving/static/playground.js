// The playground: sends the form to POST /v1/completions (or, in chat mode, the conversation
// to POST /v1/chat/completions) with stream: true and logprobs, reads the server-sent events
// as they arrive, and shows each generated token coloured by its probability, with its top-5
// alternatives on hover or keyboard focus. No libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let controller = null; // the AbortController of the request in flight (Stop aborts it)
let pending = []; // token infos whose text has not arrived yet (a held-back character)
let target = null; // where generated text goes: the output, or the assistant's message in a chat
let history = []; // the chat so far: {role, content} messages, oldest first

function chatMode() {
  return document.querySelector("input[name=mode]:checked").value === "chat";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function unescape(text) { // the Stop box takes \n and \t as the characters they name
  return text.replace(/\\n/g, "\n").replace(/\\t/g, "\t");
}

function numberOrNull(id) {
  const value = $(id).value.trim();
  return value === "" ? null : Number(value);
}

function messages() { // the system message, the chat so far and the new message
  const system = $("system").value.trim();
  return [...(system ? [{ role: "system", content: system }] : []), ...history,
          { role: "user", content: $("prompt").value }];
}

function requestBody() {
  const body = {
    max_tokens: Number($("max_tokens").value),
    temperature: Number($("temperature").value), top_p: Number($("top_p").value), stream: true,
  };
  if (chatMode()) Object.assign(body, { messages: messages(), logprobs: true, top_logprobs: 5 });
  else Object.assign(body, { prompt: $("prompt").value, logprobs: 5 });
  const topK = numberOrNull("top_k"), seed = numberOrNull("seed"), stop = $("stop").value;
  if (topK !== null) body.top_k = topK;
  if (seed !== null) body.seed = seed;
  if (stop) body.stop = unescape(stop);
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "status-error" : "";
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("stop_button").disabled = !busy;
}

function colour(probability) { // red (unlikely) through yellow to green (likely)
  return `hsl(${Math.round(120 * probability)} 80% 80%)`;
}

function addText(text, tokens) {
  const output = target;
  if (!tokens.length) { output.append(document.createTextNode(text)); return; }
  const span = document.createElement("span");
  span.className = "tok";
  span.tabIndex = -1;
  span.textContent = text;
  const probability = Math.exp(tokens.reduce((sum, t) => sum + t.logprob, 0));
  span.style.background = colour(probability);
  span.dataset.tokens = JSON.stringify(tokens);
  span.setAttribute("aria-label", `${text}: ${(100 * probability).toFixed(1)} percent`);
  output.append(span);
}

function tokenInfos(choice) { // both APIs' logprobs as [{token, logprob, top: [[text, logprob]]}]
  const lp = choice.logprobs;
  if (!lp) return [];
  if (lp.content) {
    return lp.content.map((t) => ({
      token: t.token, logprob: t.logprob, top: t.top_logprobs.map((a) => [a.token, a.logprob]),
    }));
  }
  return lp.tokens.map((token, i) => ({
    token, logprob: lp.token_logprobs[i], top: Object.entries(lp.top_logprobs[i] || {}),
  }));
}

function onChoice(choice) {
  pending = pending.concat(tokenInfos(choice));
  const text = choice.delta ? choice.delta.content || "" : choice.text;
  if (text) {
    addText(text, pending);
    pending = [];
  }
  if (choice.finish_reason) setStatus(`done (${choice.finish_reason})`);
}

function message(role, text) { // a message of the chat transcript; returns where its text goes
  const box = document.createElement("div");
  box.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Model";
  const body = document.createElement("span");
  body.textContent = text;
  box.append(who, body);
  $("output").append(box);
  return body;
}

async function readEvents(response) { // server-sent events: blocks of "data: ..." lines
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event.error) throw new Error(event.error.message);
        event.choices.forEach(onChoice);
      }
    }
  }
}

async function generate() {
  if (controller) return;
  if (!$("form").reportValidity()) return;
  hideTooltip();
  const chat = chatMode(), said = $("prompt").value;
  if (chat) {
    message("user", said);
    target = message("assistant", "");
  } else {
    const output = $("output");
    output.replaceChildren();
    const prompt = document.createElement("span");
    prompt.className = "prompt";
    prompt.textContent = said;
    output.append(prompt);
    target = output;
  }
  const body = requestBody();
  pending = [];
  controller = new AbortController();
  setBusy(true);
  setStatus("generating…");
  try {
    const response = await fetch(chat ? "v1/chat/completions" : "v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    await readEvents(response);
    if (chat) { // the exchange becomes part of the conversation
      history.push({ role: "user", content: said }, { role: "assistant", content: target.textContent.trim() });
      $("prompt").value = "";
    }
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped");
    else setStatus(`error: ${err.message}`, true);
  } finally {
    controller = null;
    setBusy(false);
  }
}

function stop() {
  if (controller) controller.abort();
}

// ---- the top-5 tooltip: on hover, and on keyboard focus moved with the arrow keys ----

function shown(token) { // JSON quoting makes spaces, newlines and empty tokens visible
  return JSON.stringify(token);
}

function showTooltip(span) {
  const tokens = JSON.parse(span.dataset.tokens);
  const tip = $("tooltip");
  tip.replaceChildren();
  for (const t of tokens) {
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = `chose ${shown(t.token)} (${(100 * Math.exp(t.logprob)).toFixed(1)}%); top ${t.top.length}:`;
    table.append(caption);
    for (const [alt, logprob] of t.top) {
      const row = table.insertRow();
      if (alt === t.token) row.className = "chosen";
      row.insertCell().textContent = shown(alt);
      const p = row.insertCell();
      p.className = "p";
      p.textContent = `${(100 * Math.exp(logprob)).toFixed(1)}%`;
    }
    tip.append(table);
  }
  tip.hidden = false;
  const box = span.getBoundingClientRect();
  const left = Math.min(box.left, document.documentElement.clientWidth - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(4, left) + window.scrollX}px`;
  tip.style.top = `${box.bottom + window.scrollY + 4}px`;
}

function hideTooltip() {
  $("tooltip").hidden = true;
}

function tokens() {
  return Array.from($("output").querySelectorAll(".tok"));
}

function focusToken(span) {
  for (const t of tokens()) t.classList.toggle("focused", t === span);
  span.focus();
  showTooltip(span);
}

function onOutputKey(event) {
  const all = tokens();
  if (!all.length) return;
  const at = all.indexOf(document.activeElement);
  const moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1,
                  Home: 0, End: all.length - 1 };
  if (event.key === "Escape") { hideTooltip(); $("output").focus(); return; }
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = at < 0 ? (event.key === "ArrowLeft" || event.key === "End" ? all.length - 1 : 0) : moves[event.key];
  focusToken(all[Math.max(0, Math.min(all.length - 1, next))]);
}

function setMode() {
  const chat = chatMode();
  for (const element of document.querySelectorAll(".chat-only")) element.hidden = !chat;
  $("prompt_label").textContent = chat ? "Message" : "Prompt";
  $("generate").textContent = chat ? "Send" : "Generate";
  newChat();
}

function newChat() {
  history = [];
  hideTooltip();
  $("output").replaceChildren();
  setStatus("");
}

function init() {
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", setMode);
  $("new_chat").addEventListener("click", newChat);
  $("form").addEventListener("submit", (event) => { event.preventDefault(); generate(); });
  $("stop_button").addEventListener("click", stop);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); generate(); }
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
  const output = $("output");
  output.addEventListener("keydown", onOutputKey);
  output.addEventListener("mouseover", (event) => {
    if (event.target.classList.contains("tok")) showTooltip(event.target);
  });
  output.addEventListener("mouseleave", hideTooltip);
  output.addEventListener("focusout", (event) => {
    if (!output.contains(event.relatedTarget)) hideTooltip();
  });
  showModel();
  prefillPrompt();
}

function showModel() { // the name the server gives the model (its run's name), never a fixed one
  fetch("v1/models", { headers: headers() })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then((body) => {
      const name = body.data[0].id;
      $("model").textContent = `model: ${name}`;
      document.title = `${name} · gpt2 playground`;
    })
    .catch(() => { $("model").textContent = "model: (enter the API key to use this server)"; });
}

function prefillPrompt() { // a line of the model's own validation text, in its own language
  let typed = false; // never replace what the user typed before the answer came
  $("prompt").addEventListener("input", () => { typed = true; }, { once: true });
  fetch("health")
    .then((r) => (r.ok ? r.json() : {}))
    .then((body) => {
      if (!typed && typeof body.example_prompt === "string") $("prompt").value = body.example_prompt;
    })
    .catch(() => {}); // no example: the prompt stays empty (the model then starts from end-of-text)
}

init();
