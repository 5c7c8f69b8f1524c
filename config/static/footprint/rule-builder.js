/* The segment rule builder: the rule as conditions a person picks (kind, trait or event,
   operator, value) nested in all/any/not groups, kept in step with the rule's JSON (the
   "advanced" textarea, #id_rule, which is what the form saves). Builder -> JSON -> builder gives
   the same rule: what the builder cannot show as fields (a shape it does not know) it keeps as
   a JSON box of its own, untouched.

   Beside it: the live count and ten matching guests (the segment preview endpoint) and a
   warning beside every trait, event or property name the workspace has never sent (the names
   endpoint, read from the event and trait catalogue). */
(function () {
  "use strict";

  const VALUE_OPS = [
    ["eq", "is"], ["neq", "is not"], ["gt", "is more than"], ["gte", "is at least"],
    ["lt", "is less than"], ["lte", "is at most"], ["contains", "contains"], ["in", "is one of"],
    ["exists", "is set"],
  ];
  const COUNT_OPS = [["gte", "at least"], ["gt", "more than"], ["eq", "exactly"], ["lte", "at most"], ["lt", "fewer than"]];
  const FIELDS = {
    guest_type: { label: "guest type", ops: ["eq", "neq", "in"] },
    email_domain: { label: "email domain", ops: ["eq", "neq", "in"] },
    first_seen: { label: "first seen", ops: ["gt", "gte", "lt", "lte"] },
    last_seen: { label: "last seen", ops: ["gt", "gte", "lt", "lte"] },
  };
  const MOMENT_OPS = { gt: "after", gte: "on or after", lt: "before", lte: "on or before" };
  const KINDS = [
    ["trait", "Trait"], ["event", "Did an event"], ["revenue", "Revenue"], ["sessions", "Sessions"],
    ["field", "Guest field"], ["experience", "Saw an experience"], ["segment", "In a segment"],
  ];
  const NEW_CONDITION = {
    trait: function () { return { trait: { key: "", op: "eq", value: "" } }; },
    event: function () { return { event: { name: "" } }; },
    revenue: function () { return { revenue: { op: "gte", value: 0 } }; },
    sessions: function () { return { sessions: { op: "gte", value: 1 } }; },
    field: function () { return { field: { name: "guest_type", op: "eq", value: "customer" } }; },
    experience: function () { return { experience: { friendly_id: "" } }; },
    segment: function () { return { segment: { slug: "" } }; },
  };
  // The keys each condition may hold: any other shape is kept as JSON.
  const SHAPES = {
    trait: [["key", "op", "value"], []],
    field: [["name", "op", "value"], []],
    event: [["name"], ["count", "within_days", "where"]],
    revenue: [["op", "value"], ["within_days"]],
    sessions: [["op", "value"], ["within_days"]],
    experience: [["friendly_id"], ["variant"]],
    segment: [["slug"], []],
  };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([key, value]) {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function select(options, value, onchange, label) {
    const node = el("select", { "aria-label": label, onchange: function () { onchange(node.value); } });
    options.forEach(function ([key, text]) { node.appendChild(el("option", { value: key, text: text })); });
    node.value = value;
    return node;
  }

  function isObject(value) { return value !== null && typeof value === "object" && !Array.isArray(value); }

  function hasShape(body, kind) {
    if (!isObject(body)) return false;
    const [required, optional] = SHAPES[kind];
    const keys = Object.keys(body);
    return required.every(function (k) { return k in body; })
      && keys.every(function (k) { return required.includes(k) || optional.includes(k); });
  }

  function typeOf(value) {
    if (typeof value === "number") return "number";
    if (typeof value === "boolean") return "boolean";
    if (typeof value === "string") return "text";
    return "json";
  }

  /* One typed value: a kind (text, number, true/false, or JSON) and an input. A value that is
     not what its kind says (a number box holding "abc") is saved as the text typed, so the
     server's check names it instead of it being lost. */
  function valueEditor(value, onchange, op) {
    if (op === "exists") {
      return select([["true", "yes"], ["false", "no"]], String(value !== false), function (v) { onchange(v === "true"); }, "is set");
    }
    const isList = op === "in";
    let kind;
    if (isList) {
      const items = Array.isArray(value) ? value : [];
      const kinds = new Set(items.map(typeOf));
      kind = items.length && kinds.size === 1 && !kinds.has("json") && !kinds.has("boolean")
        && items.every(function (item) { return typeof item !== "string" || !item.includes(","); })
        ? "list-" + [...kinds][0] : (items.length ? "json" : "list-text");
    } else {
      kind = typeOf(value);
    }
    const wrap = el("span", { className: "fp-rb-value" });
    const kinds = isList
      ? [["list-text", "texts"], ["list-number", "numbers"], ["json", "JSON"]]
      : [["text", "text"], ["number", "number"], ["boolean", "yes/no"], ["json", "JSON"]];
    let input;
    function shownAs(k, v) {
      if (k === "list-text" || k === "list-number") return (Array.isArray(v) ? v : []).join(", ");
      if (k === "json") return JSON.stringify(v === undefined ? null : v);
      if (v === undefined || v === null) return "";
      return String(v);
    }
    function parse(k, text) {
      if (k === "number") { const n = Number(text); return text.trim() !== "" && isFinite(n) ? n : text; }
      if (k === "boolean") return text === "true";
      if (k === "list-text") return text.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      if (k === "list-number") {
        return text.split(",").map(function (s) { return s.trim(); }).filter(Boolean)
          .map(function (s) { const n = Number(s); return isFinite(n) ? n : s; });
      }
      if (k === "json") { try { return JSON.parse(text); } catch (e) { return text; } }
      return text;
    }
    function draw() {
      wrap.textContent = "";
      if (kind === "boolean") {
        input = select([["true", "true"], ["false", "false"]], String(value === true), function (v) { value = v === "true"; onchange(value); }, "value");
      } else {
        input = el("input", {
          type: "text", value: shownAs(kind, value), "aria-label": "value", className: "fp-rb-input",
          placeholder: isList ? "a, b, c" : "value",
          oninput: function () { value = parse(kind, input.value); onchange(value); },
        });
      }
      wrap.appendChild(input);
      wrap.appendChild(select(kinds, kind, function (k) {
        const text = kind === "boolean" ? String(value) : input.value;
        kind = k;
        value = parse(k, text);
        onchange(value);
        draw();
      }, "value kind"));
    }
    draw();
    return wrap;
  }

  function numberInput(value, onchange, label, optional) {
    const input = el("input", {
      type: "number", value: value === undefined ? "" : value, "aria-label": label,
      className: "fp-rb-number", placeholder: optional ? "any" : "",
      oninput: function () {
        if (input.value === "" && optional) { onchange(undefined); return; }
        const n = Number(input.value);
        onchange(input.value !== "" && isFinite(n) ? n : input.value);
      },
    });
    return input;
  }

  function textInput(value, onchange, label, list) {
    return el("input", {
      type: "text", value: value || "", "aria-label": label, list: list, className: "fp-rb-input",
      oninput: function (event) { onchange(event.target.value); },
    });
  }

  function Builder(root, textarea, options) {
    this.root = root;
    this.textarea = textarea;
    this.options = options;
    this.names = { events: [], traits: [], properties: {}, segments: [], experiences: [], loaded: false };
    this.rule = null;
  }

  Builder.prototype.load = function () {
    try {
      this.rule = JSON.parse(this.textarea.value);
    } catch (e) {
      this.rule = null;
    }
    this.render();
  };

  Builder.prototype.changed = function () {
    this.textarea.value = JSON.stringify(this.rule, null, 2);
    this.textarea.dispatchEvent(new CustomEvent("fp-rule-changed"));
    this.warnAll();
  };

  Builder.prototype.render = function () {
    const self = this;
    this.root.textContent = "";
    if (this.rule === null || this.rule === undefined || !isObject(this.rule)) {
      const start = el("div", { className: "fp-rb-start" }, [
        el("p", { text: this.textarea.value.trim() ? "The JSON below is not a rule the builder can read yet; fix it there, or start over:" : "Start the rule:" }),
        el("button", { type: "button", className: "button", text: "Guests matching all of…", onclick: function () { self.rule = { all: [NEW_CONDITION.trait()] }; self.changed(); self.render(); } }),
      ]);
      this.root.appendChild(start);
      return;
    }
    this.root.appendChild(this.node(this.rule, function (replacement) { self.rule = replacement; }, null));
    this.warnAll();
  };

  /* A node's editor. ``set`` replaces the node in its parent; ``remove`` (null at the top)
     takes it out. */
  Builder.prototype.node = function (node, set, remove) {
    const self = this;
    const redraw = function () { self.changed(); self.render(); };
    if (isObject(node) && Object.keys(node).length === 1 && (Array.isArray(node.all) || Array.isArray(node.any))) {
      const logic = node.all ? "all" : "any";
      const children = node[logic];
      const box = el("div", { className: "fp-rb-group" });
      const head = el("div", { className: "fp-rb-head" }, [
        el("span", { text: "Guests matching " }),
        select([["all", "all"], ["any", "any"]], logic, function (v) {
          const replaced = {}; replaced[v] = children; set(replaced); redraw();
        }, "all or any"),
        el("span", { text: " of:" }),
      ]);
      box.appendChild(head);
      const list = el("ol", { className: "fp-rb-children" });
      children.forEach(function (child, index) {
        list.appendChild(el("li", {}, [self.node(child,
          function (replacement) { children[index] = replacement; },
          function () { children.splice(index, 1); redraw(); })]));
      });
      box.appendChild(list);
      const adders = el("div", { className: "fp-rb-actions" }, [
        el("button", { type: "button", className: "button fp-rb-add", text: "+ condition", onclick: function () { children.push(NEW_CONDITION.trait()); redraw(); } }),
        el("button", { type: "button", className: "button fp-rb-add-group", text: "+ group", onclick: function () { children.push({ any: [NEW_CONDITION.trait()] }); redraw(); } }),
        el("button", { type: "button", className: "button fp-rb-negate", text: "negate", title: "Guests NOT matching this group", onclick: function () { set({ not: node }); redraw(); } }),
        remove ? el("button", { type: "button", className: "button fp-rb-remove", text: "remove group", onclick: remove }) : null,
      ]);
      box.appendChild(adders);
      return box;
    }
    if (isObject(node) && Object.keys(node).length === 1 && "not" in node) {
      const box = el("div", { className: "fp-rb-group fp-rb-not" }, [
        el("div", { className: "fp-rb-head" }, [
          el("strong", { text: "Not: " }), el("span", { text: "guests who do NOT match" }),
          el("button", { type: "button", className: "button fp-rb-unnegate", text: "drop the not", onclick: function () { set(node.not); redraw(); } }),
          remove ? el("button", { type: "button", className: "button fp-rb-remove", text: "remove", onclick: remove }) : null,
        ]),
        self.node(node.not, function (replacement) { node.not = replacement; }, null),
      ]);
      return box;
    }
    const kind = isObject(node) && Object.keys(node).length === 1 ? Object.keys(node)[0] : null;
    if (kind && SHAPES[kind] && hasShape(node[kind], kind) && this.shapeOk(kind, node[kind])) {
      return this.condition(kind, node, set, remove);
    }
    return this.raw(node, set, remove);
  };

  // Beyond the keys: values the fields can show exactly (else the condition is kept as JSON).
  Builder.prototype.shapeOk = function (kind, body) {
    if (kind === "event") {
      if ("count" in body && !(isObject(body.count) && Object.keys(body.count).sort().join() === "op,value")) return false;
      if ("where" in body && !(Array.isArray(body.where) && body.where.every(function (w) {
        return isObject(w) && Object.keys(w).sort().join() === "op,property,value";
      }))) return false;
    }
    if (kind === "field") {
      if (!(body.name in FIELDS)) return false;
      if ((body.name === "first_seen" || body.name === "last_seen")
        && !(typeof body.value === "string" || (isObject(body.value) && Object.keys(body.value).join() === "days_ago"))) return false;
    }
    return true;
  };

  Builder.prototype.raw = function (node, set, remove) {
    const self = this;
    const area = el("textarea", { rows: 3, cols: 60, className: "fp-rb-raw", "aria-label": "condition as JSON" });
    area.value = JSON.stringify(node);
    const note = el("span", { className: "fp-rb-warn" });
    area.addEventListener("input", function () {
      try { set(JSON.parse(area.value)); note.textContent = ""; self.changed(); } catch (e) { note.textContent = "not JSON yet"; }
    });
    area.addEventListener("change", function () { self.render(); });
    return el("div", { className: "fp-rb-condition fp-rb-rawbox" }, [
      el("span", { className: "fp-muted", text: "As JSON: " }), area, note,
      remove ? el("button", { type: "button", className: "button fp-rb-remove", text: "remove", onclick: remove }) : null,
    ]);
  };

  Builder.prototype.condition = function (kind, node, set, remove) {
    const self = this;
    const body = node[kind];
    const redraw = function () { self.changed(); self.render(); };
    const changed = function () { self.changed(); };
    const row = el("div", { className: "fp-rb-condition", "data-kind": kind });
    row.appendChild(select(KINDS, kind, function (v) { set(NEW_CONDITION[v]()); redraw(); }, "condition kind"));
    const warn = el("span", { className: "fp-rb-warn", "aria-live": "polite" });

    if (kind === "trait") {
      row.appendChild(textInput(body.key, function (v) { body.key = v; changed(); }, "trait", "fp-rb-traits"));
      row.appendChild(select(VALUE_OPS, body.op, function (v) {
        body.op = v;
        if (v === "exists") body.value = true;
        else if (v === "in") body.value = Array.isArray(body.value) ? body.value : (body.value === "" || body.value === true ? [] : [body.value]);
        else if (Array.isArray(body.value)) body.value = body.value.length ? body.value[0] : "";
        else if (body.value === true && v !== "eq" && v !== "neq") body.value = "";
        redraw();
      }, "operator"));
      row.appendChild(valueEditor(body.value, function (v) { body.value = v; changed(); }, body.op));
      warn.dataset.check = "trait";
    } else if (kind === "field") {
      row.appendChild(select(Object.entries(FIELDS).map(function ([k, f]) { return [k, f.label]; }), body.name, function (v) {
        body.name = v;
        body.op = FIELDS[v].ops[0];
        body.value = v === "guest_type" ? "customer" : v === "email_domain" ? "" : { days_ago: 30 };
        redraw();
      }, "field"));
      const moment = body.name === "first_seen" || body.name === "last_seen";
      row.appendChild(select(FIELDS[body.name].ops.map(function (op) {
        return [op, moment ? MOMENT_OPS[op] : (VALUE_OPS.find(function (o) { return o[0] === op; }) || [op, op])[1]];
      }), body.op, function (v) {
        body.op = v;
        if (!moment) {
          if (v === "in" && !Array.isArray(body.value)) body.value = body.value ? [body.value] : [];
          if (v !== "in" && Array.isArray(body.value)) body.value = body.value[0] || "";
        }
        redraw();
      }, "operator"));
      if (moment) {
        const daysAgo = isObject(body.value);
        row.appendChild(select([["days", "days ago"], ["date", "the date"]], daysAgo ? "days" : "date", function (v) {
          body.value = v === "days" ? { days_ago: 30 } : new Date().toISOString().slice(0, 10) + "T00:00:00Z";
          redraw();
        }, "moment kind"));
        row.appendChild(daysAgo
          ? numberInput(body.value.days_ago, function (v) { body.value = { days_ago: v }; changed(); }, "days ago")
          : textInput(body.value, function (v) { body.value = v; changed(); }, "date-time"));
      } else if (body.name === "guest_type" && body.op !== "in") {
        row.appendChild(select([["customer", "customer"], ["visitor", "visitor"]], body.value, function (v) { body.value = v; changed(); }, "guest type"));
      } else {
        row.appendChild(valueEditor(body.value, function (v) { body.value = v; changed(); }, body.op));
      }
    } else if (kind === "event") {
      row.appendChild(textInput(body.name, function (v) { body.name = v; changed(); }, "event", "fp-rb-events"));
      const count = body.count || { op: "gte", value: 1 };
      row.appendChild(el("span", { text: " " }));
      row.appendChild(select(COUNT_OPS, count.op, function (v) { body.count = { op: v, value: count.value }; changed(); }, "count operator"));
      row.appendChild(numberInput(body.count ? body.count.value : undefined, function (v) {
        if (v === undefined) delete body.count; else body.count = { op: (body.count || count).op, value: v };
        changed();
      }, "times", true));
      row.appendChild(el("span", { text: " times, in the last " }));
      row.appendChild(numberInput(body.within_days, function (v) {
        if (v === undefined) delete body.within_days; else body.within_days = v;
        changed();
      }, "within days", true));
      row.appendChild(el("span", { text: " days" }));
      warn.dataset.check = "event";
      const where = el("ul", { className: "fp-rb-where" });
      (body.where || []).forEach(function (w, index) {
        const line = el("li", { className: "fp-rb-where-row" }, [
          el("span", { text: "where " }),
          textInput(w.property, function (v) { w.property = v; changed(); }, "property", "fp-rb-properties-" + self.listId(body.name)),
          select(VALUE_OPS, w.op, function (v) {
            w.op = v;
            if (v === "exists") w.value = true;
            else if (v === "in") w.value = Array.isArray(w.value) ? w.value : [];
            else if (Array.isArray(w.value) || w.value === true) w.value = "";
            redraw();
          }, "property operator"),
          valueEditor(w.value, function (v) { w.value = v; changed(); }, w.op),
          el("span", { className: "fp-rb-warn", "data-check": "property", "data-event": body.name }),
          el("button", { type: "button", className: "button fp-rb-remove", text: "×", title: "remove", onclick: function () {
            body.where.splice(index, 1); if (!body.where.length) delete body.where; redraw();
          } }),
        ]);
        where.appendChild(line);
      });
      row.appendChild(warn);
      row.appendChild(el("button", { type: "button", className: "button fp-rb-add-where", text: "+ where", onclick: function () {
        body.where = body.where || []; body.where.push({ property: "", op: "eq", value: "" }); redraw();
      } }));
      if (remove) row.appendChild(el("button", { type: "button", className: "button fp-rb-remove", text: "remove", onclick: remove }));
      return el("div", {}, [row, where]);
    } else if (kind === "revenue" || kind === "sessions") {
      row.appendChild(select(COUNT_OPS, body.op, function (v) { body.op = v; changed(); }, "operator"));
      row.appendChild(numberInput(body.value, function (v) { body.value = v === undefined ? "" : v; changed(); }, kind === "revenue" ? "amount" : "sessions"));
      row.appendChild(el("span", { text: kind === "revenue" ? " in revenue, in the last " : " sessions, in the last " }));
      row.appendChild(numberInput(body.within_days, function (v) {
        if (v === undefined) delete body.within_days; else body.within_days = v;
        changed();
      }, "within days", true));
      row.appendChild(el("span", { text: " days" }));
    } else if (kind === "experience") {
      row.appendChild(textInput(body.friendly_id, function (v) { body.friendly_id = v; changed(); }, "experience", "fp-rb-experiences"));
      row.appendChild(el("span", { text: " variant " }));
      row.appendChild(textInput(body.variant, function (v) {
        if (v === "") delete body.variant; else body.variant = v;
        changed();
      }, "variant (any)"));
    } else if (kind === "segment") {
      row.appendChild(textInput(body.slug, function (v) { body.slug = v; changed(); }, "segment", "fp-rb-segments"));
      warn.dataset.check = "segment";
    }
    row.appendChild(warn);
    if (remove) row.appendChild(el("button", { type: "button", className: "button fp-rb-remove", text: "remove", onclick: remove }));
    return row;
  };

  Builder.prototype.listId = function (name) {
    const index = this.names.events.indexOf(name);
    return index === -1 ? "none" : String(index);
  };

  /* The warnings beside names the workspace has never sent, from the catalogue. */
  Builder.prototype.warnAll = function () {
    const names = this.names;
    if (!names.loaded) return;
    this.root.querySelectorAll(".fp-rb-condition").forEach(function (row) {
      const warn = row.querySelector(".fp-rb-warn[data-check]");
      if (!warn) return;
      const input = row.querySelector("input[list]");
      const value = input ? input.value : "";
      const check = warn.dataset.check;
      const known = { trait: names.traits, event: names.events, segment: names.segments, experience: names.experiences }[check] || [];
      const noun = { trait: "trait", event: "event", segment: "segment", experience: "experience" }[check];
      warn.textContent = value && !known.includes(value)
        ? "⚠ no " + noun + " named “" + value + "” " + (check === "segment" ? "in this workspace" : "seen in this workspace")
        : "";
    });
    this.root.querySelectorAll(".fp-rb-where-row").forEach(function (line) {
      const warn = line.querySelector(".fp-rb-warn");
      const event = warn.dataset.event;
      const value = line.querySelector("input[list]").value;
      const known = names.properties[event] || [];
      warn.textContent = value && names.events.includes(event) && !known.includes(value)
        ? "⚠ “" + event + "” has never had a property “" + value + "”" : "";
    });
  };

  Builder.prototype.namesLoad = function (workspace) {
    const self = this;
    if (!workspace) return;
    fetch(this.options.namesUrl + "?workspace=" + encodeURIComponent(workspace), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.error) return;
        self.names = Object.assign({ loaded: true, experiences: [] }, data);
        self.datalists();
        self.render();
      });
  };

  Builder.prototype.datalists = function () {
    const names = this.names;
    const holder = document.getElementById("fp-rb-lists");
    holder.textContent = "";
    function list(id, values) {
      const node = el("datalist", { id: id });
      values.forEach(function (value) { node.appendChild(el("option", { value: value })); });
      holder.appendChild(node);
    }
    list("fp-rb-traits", names.traits);
    list("fp-rb-events", names.events);
    list("fp-rb-segments", names.segments);
    list("fp-rb-experiences", names.experiences);
    names.events.forEach(function (event, index) { list("fp-rb-properties-" + index, names.properties[event] || []); });
  };

  function preview(options, rule, workspace, slug, out, sample) {
    let parsed;
    try { parsed = JSON.parse(rule.value); } catch (e) {
      out.textContent = "Not valid JSON yet: " + e.message;
      out.className = "fp-banner fp-banner-warn";
      sample.textContent = "";
      return;
    }
    fetch(options.previewUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": options.csrf },
      body: JSON.stringify({ rule: parsed, workspace: workspace ? workspace.value : null, slug: slug ? slug.value : "" }),
    }).then(function (r) { return r.json(); }).then(function (data) {
      sample.textContent = "";
      if (data.error) {
        out.className = "fp-banner fp-banner-bad";
        out.textContent = (data.error.path ? data.error.path + ": " : "") + data.error.message;
        return;
      }
      out.className = "fp-banner fp-banner-good";
      out.textContent = data.count.toLocaleString() + (data.count === 1 ? " guest matches" : " guests match") + " right now.";
      out.dataset.count = data.count;
      (data.sample || []).forEach(function (guest) {
        sample.appendChild(el("li", {}, [el("a", { href: guest.url, text: guest.label })]));
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("fp-rule-builder");
    const rule = document.getElementById("id_rule");
    if (!root || !rule) return;
    const csrf = document.querySelector("[name=csrfmiddlewaretoken]");
    const options = { previewUrl: root.dataset.previewUrl, namesUrl: root.dataset.namesUrl, csrf: csrf ? csrf.value : "" };
    const workspace = document.getElementById("id_workspace");
    const workspaceId = function () { return workspace ? workspace.value : root.dataset.workspace; };
    const slug = document.getElementById("id_slug");
    const out = document.getElementById("fp-preview");
    const sample = document.getElementById("fp-preview-sample");
    const builder = new Builder(root, rule, options);
    window.footprintRuleBuilder = builder;
    let timer = null;
    const soon = function () {
      clearTimeout(timer);
      timer = setTimeout(function () { preview(options, rule, { value: workspaceId() }, slug, out, sample); }, 300);
    };
    rule.addEventListener("fp-rule-changed", soon);
    rule.addEventListener("input", function () { builder.load(); soon(); });
    if (workspace) workspace.addEventListener("change", function () { builder.namesLoad(workspace.value); soon(); });
    builder.load();
    builder.namesLoad(workspaceId());
    soon();
  });
})();
