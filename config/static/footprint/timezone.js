/* Tells the server the browser's time zone (the fp_tz cookie, read by
   config.lib.timezones), so the admin shows times where the reader is. When the cookie was
   missing or stale, the page is loaded once more to show them so. */
(function () {
  "use strict";
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone) return;
  var current = (document.cookie.match(/(?:^|; )fp_tz=([^;]*)/) || [])[1];
  if (current && decodeURIComponent(current) === zone) return;
  document.cookie = "fp_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";
  if (document.cookie.indexOf("fp_tz=") !== -1 && window.location.pathname.indexOf("/admin/") === 0) {
    window.location.reload();
  }
})();
