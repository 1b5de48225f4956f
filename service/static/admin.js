// The SEAL admin dashboard: plain browser JavaScript, no build step. It reads /admin/api/*
// (signed in by the HttpOnly session cookie) and sends every action with the page's CSRF
// token in X-CSRF-Token.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
let current = null; // the tenant shown
let polling = null;

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    window.location.assign("/admin"); // signed out: the sign-in page
    throw new Error("signed out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

async function showTenants() {
  const tenants = await api("/admin/api/tenants");
  const body = document.querySelector("#tenant-table tbody");
  body.replaceChildren(
    ...tenants.map((t) => {
      const link = el("a", { href: "#" + t.id, "data-tenant": t.id }, t.name);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        showTenant(t.id);
      });
      return el(
        "tr",
        {},
        el("td", {}, link),
        el("td", {}, t.format || "default"),
        el("td", {}, t.active_version ?? "base model"),
        el("td", {}, t.documents),
        el("td", {}, t.skills),
        el("td", {}, t.open_jobs),
      );
    }),
  );
}

function metricsText(metrics) {
  return Object.entries(metrics || {})
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`)
    .join(", ");
}

function metric(version, name, digits) {
  const value = version.metrics && version.metrics[name];
  return typeof value === "number" ? value.toFixed(digits) : "";
}

function versionRow(v, score, detail, activate) {
  // one version of an adapter or a skill: a button makes it active unless it was rejected
  // or its weights are gone
  const usable = v.status !== "active" && v.status !== "rejected" && v.checksum;
  const button = el(
    "button",
    { class: "rollback", "data-version": v.version, disabled: !usable },
    v.status === "active" ? "active" : `Make v${v.version} active`,
  );
  button.addEventListener("click", activate);
  return el(
    "tr",
    { "data-version": v.version, class: "status-" + v.status },
    el("td", {}, "v" + v.version),
    el("td", { class: "status" }, v.status),
    el("td", {}, v.parent ? "v" + v.parent : ""),
    el("td", {}, score),
    el("td", { class: "metrics" }, detail),
    el("td", {}, when(v.created_at)),
    el("td", {}, button),
  );
}

async function showTenant(id) {
  current = id;
  const tenant = await api(`/admin/api/tenants/${encodeURIComponent(id)}`);
  document.querySelector("#tenant").hidden = false;
  document.querySelector("#tenant-name").textContent = tenant.name;
  const rows = tenant.versions.map((v) =>
    versionRow(v, metric(v, "probe_accuracy", 3), metricsText(v.metrics), () => rollback(v.version)),
  );
  document.querySelector("#version-table tbody").replaceChildren(...rows);
  showSkills(tenant.skills);
  showJobs(tenant.jobs);
  drawRewards(tenant.rewards);
  const open = tenant.jobs.some((j) => j.status === "queued" || j.status === "running");
  clearTimeout(polling);
  if (open) polling = setTimeout(() => current === id && showTenant(id), 2000);
}

function configText(config) {
  // the paper's fields, briefly: augmentations on, learning rate, epochs, loss
  if (!config) return "";
  const data = config.data_generation || {}, training = config.training || {};
  const augmentations = Object.entries(data)
    .filter(([, on]) => on)
    .map(([name]) => name.replace(/^use_|_augmentations$/g, ""));
  const loss = training.strategy === "train_using_all_tokens" ? "all tokens" : "outputs";
  return [
    `augmentations: ${augmentations.join(", ") || "none"}`,
    `lr ${training.learning_rate}`,
    `${training.num_train_epochs} epochs`,
    `loss on ${loss}`,
  ].join("; ");
}

function showSkills(skills) {
  const box = document.querySelector("#skills");
  if (!skills.length) {
    box.replaceChildren(el("p", {}, "No skills yet."));
    return;
  }
  box.replaceChildren(
    ...skills.map((skill) => {
      const rows = skill.versions.map((v) =>
        versionRow(v, metric(v, "held_out_score", 2), configText(v.config), () =>
          rollbackSkill(skill, v.version),
        ),
      );
      const off = el(
        "button",
        { class: "rollback", "data-version": 0, disabled: skill.active_version == null },
        "No active version",
      );
      off.addEventListener("click", () => rollbackSkill(skill, 0));
      const active = skill.active_version ? `v${skill.active_version} active` : "no active version";
      return el(
        "section",
        { class: "skill", "data-skill": skill.name },
        el("h4", {}, `${skill.name} (${skill.examples} examples, ${active})`),
        el(
          "table",
          {},
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ...["version", "status", "parent", "held-out score", "configuration", "created", ""]
                .map((name) => el("th", {}, name)),
            ),
          ),
          el("tbody", {}, ...rows),
        ),
        off,
      );
    }),
  );
}

let story = null; // the job whose story is shown

function showJobs(jobs) {
  document.querySelector("#job-table tbody").replaceChildren(
    ...jobs.map((j) => {
      const button = el("button", { class: "story", "data-job": j.id }, "Story");
      button.addEventListener("click", () => showStory(j.id));
      return el(
        "tr",
        { class: "status-" + j.status, "data-job": j.id },
        el("td", {}, j.kind),
        el("td", {}, j.status),
        el("td", {}, el("progress", { max: 1, value: j.progress || 0 }), ` ${Math.round((j.progress || 0) * 100)}%`),
        el("td", {}, j.message || ""),
        el("td", {}, when(j.created_at)),
        el("td", {}, button),
      );
    }),
  );
  if (story) showStory(story);
}

function figuresText(data) {
  // a stage's figures, briefly: numbers rounded, lists of numbers joined
  if (!data) return "";
  const show = (value) =>
    typeof value === "number" ? (Number.isInteger(value) ? value : value.toFixed(3))
    : Array.isArray(value) ? value.map(show).join(" ")
    : value && typeof value === "object" ? JSON.stringify(value) : String(value);
  return Object.entries(data).map(([name, value]) => `${name}: ${show(value)}`).join("; ");
}

async function showStory(jobId) {
  story = jobId;
  const found = await api(
    `/admin/api/tenants/${encodeURIComponent(current)}/jobs/${encodeURIComponent(jobId)}/events`,
  );
  document.querySelector("#job-story").hidden = false;
  const more = found.total > found.events.length ? ` (first ${found.events.length} of ${found.total})` : "";
  document.querySelector("#job-story-title").textContent =
    `Story of the ${found.job.kind} job ${found.job.id.slice(0, 8)}: ${found.job.status}${more}`;
  document.querySelector("#job-events tbody").replaceChildren(
    ...found.events.map((e) =>
      el(
        "tr",
        {},
        el("td", {}, when(e.created_at)),
        el("td", {}, `${Math.round(e.progress * 100)}%`),
        el("td", {}, e.message),
        el("td", { class: "metrics" }, figuresText(e.data)),
      ),
    ),
  );
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

function drawRewards(rewards) {
  // one series per format and teacher version: each reward a point, in time order
  const box = document.querySelector("#reward-chart");
  const points = rewards.filter((r) => typeof r.value === "number");
  if (!points.length) {
    box.replaceChildren(el("p", {}, "No rewards yet."));
    return;
  }
  const series = new Map();
  points.forEach((r, i) => {
    const teacher = r.teacher_version ? `teacher v${r.teacher_version}` : "base teacher";
    const name = `${r.format}, ${teacher}`;
    if (!series.has(name)) series.set(name, []);
    series.get(name).push([i, r.value]);
  });
  const W = 640, H = 220, P = 32;
  const values = points.map((r) => r.value);
  const lo = Math.min(0, ...values), hi = Math.max(1e-9, ...values);
  const x = (i) => P + (i / Math.max(1, points.length - 1)) * (W - 2 * P);
  const y = (v) => H - P - ((v - lo) / (hi - lo || 1)) * (H - 2 * P);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "reward history");
  const add = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  add("line", { x1: P, y1: y(0), x2: W - P, y2: y(0), class: "axis" });
  add("text", { x: 2, y: y(hi) + 4, class: "tick" }).textContent = hi.toFixed(2);
  add("text", { x: 2, y: y(lo) + 4, class: "tick" }).textContent = lo.toFixed(2);
  const legend = el("ul", { class: "legend" });
  [...series.entries()].forEach(([name, pts], k) => {
    const color = COLORS[k % COLORS.length];
    add("polyline", {
      points: pts.map(([i, v]) => `${x(i)},${y(v)}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 1.5, class: "series",
    });
    for (const [i, v] of pts) add("circle", { cx: x(i), cy: y(v), r: 3, fill: color });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = color;
    legend.append(el("li", { "data-series": name }, swatch, ` ${name} (${pts.length})`));
  });
  box.replaceChildren(svg, legend);
}

async function rollback(version) {
  const status = document.querySelector("#rollback-status");
  const what = version === 0 ? "the base model" : `version ${version}`;
  try {
    const result = await api(`/admin/api/tenants/${encodeURIComponent(current)}/rollback`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ version }),
    });
    status.textContent = `Now serving ${what}` +
      (result.previous ? ` (was v${result.previous.version}).` : ".");
  } catch (error) {
    status.textContent = `Rollback refused: ${error.message}`;
  }
  await Promise.all([showTenant(current), showTenants()]);
}

async function rollbackSkill(skill, version) {
  const status = document.querySelector("#skill-status");
  const what = version === 0 ? "no version" : `version ${version}`;
  const path = `/admin/api/tenants/${encodeURIComponent(current)}/skills/` +
    `${encodeURIComponent(skill.id)}/rollback`;
  try {
    const result = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ version }),
    });
    status.textContent = `Skill ${skill.name}: now ${what} active` +
      (result.previous ? ` (was v${result.previous.version}).` : ".");
  } catch (error) {
    status.textContent = `Rollback refused: ${error.message}`;
  }
  await showTenant(current);
}

document.querySelector("#rollback-base").addEventListener("click", () => rollback(0));
showTenants().then(() => {
  const id = window.location.hash.slice(1);
  if (id) showTenant(id);
});
