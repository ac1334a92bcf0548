// The resident feedback page (/y-kien): today's announcements and agenda, the form, the reply by
// short code. Talks only to /y-kien/* and only ever sets text (never HTML). Plain ES5-era
// JavaScript with fetch: cheap Android phones' browsers run it.
(function () {
  "use strict";
  function q(sel) { return document.querySelector("[data-testid=" + sel + "]"); }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function say(sel, text, cls) { var n = q(sel); n.textContent = text; n.className = cls || ""; }
  function errText(body, status) {
    var e = body && body.error;
    if (e) return e.vi + (e.en ? " (" + e.en + ")" : "");
    return status ? "Lỗi " + status : "Không kết nối được với điểm cầu (cannot reach the hall)";
  }
  function request(url, opts) {
    return fetch(url, opts).then(function (resp) {
      return resp.json().catch(function () { return null; }).then(function (body) {
        if (!resp.ok) throw { body: body, status: resp.status };
        return body;
      });
    }, function () { throw { body: null, status: 0 }; });
  }
  function time(at) { try { return new Date(at * 1000).toLocaleString("vi-VN"); } catch (e) { return ""; } }

  function loadBoard() {
    request("/y-kien/bang", { credentials: "same-origin" }).then(function (b) {
      var list = q("yk-announcements"); clear(list);
      if (!b.announcements.length) list.appendChild(el("li", "muted", "Chưa có thông báo nào hôm nay."));
      b.announcements.forEach(function (a) {
        var li = el("li", a.urgent ? "user-text urgent" : "user-text", a.text); list.appendChild(li);
      });
      var box = q("yk-agenda"); clear(box);
      if (!b.meetings.length) box.appendChild(el("p", "muted", "Hiện không có cuộc họp nào đang diễn ra."));
      b.meetings.forEach(function (m) {
        box.appendChild(el("h3", "user-text", m.title));
        var ol = el("ol"); box.appendChild(ol);
        m.agenda.forEach(function (i) { ol.appendChild(el("li", "user-text" + (i.status === "current" ? " ok" : ""), i.title)); });
      });
    }, function () {});
  }

  q("yk-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target, data = [];
    ["text", "name", "phone", "website"].forEach(function (n) {
      data.push(encodeURIComponent(n) + "=" + encodeURIComponent(form.elements[n].value));
    });
    q("yk-send").disabled = true;
    say("yk-msg", "Đang gửi…", "muted");
    request("/y-kien/gui", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: data.join("&") }).then(function (r) {
      say("yk-msg", "Đã gửi ý kiến. Cảm ơn bạn!", "ok");
      q("yk-code").textContent = r.code; q("yk-code-box").className = "code";
      q("yk-ma").value = r.code;
      form.elements.text.value = "";
    }, function (f) { say("yk-msg", errText(f.body, f.status), "error"); })
      .then(function () { q("yk-send").disabled = false; });
  });

  q("yk-lookup-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var code = q("yk-ma").value, box = q("yk-answer");
    clear(box); say("yk-lookup-msg", "Đang tìm…", "muted");
    request("/y-kien/tra-loi?ma=" + encodeURIComponent(code), { credentials: "same-origin" }).then(function (r) {
      say("yk-lookup-msg", "");
      box.appendChild(el("p", "user-text", "Ý kiến (" + time(r.at) + "): " + r.text));
      if (!r.replies.length) box.appendChild(el("p", "muted", "Xã chưa trả lời. Hãy xem lại sau."));
      r.replies.forEach(function (x) {
        var d = el("div", "reply"); d.setAttribute("data-testid", "yk-reply");
        d.appendChild(el("strong", null, "Xã trả lời: ")); d.appendChild(el("span", "user-text", x.text));
        box.appendChild(d);
      });
    }, function (f) { say("yk-lookup-msg", errText(f.body, f.status), "error"); });
  });

  loadBoard();
  setInterval(loadBoard, 30000);
})();
