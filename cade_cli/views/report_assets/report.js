/* cade experiment report: click a trials-table header to sort by it (again to reverse);
   a long table shows PAGE rows at a time (without script every row shows). */
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-value");
    var text = raw === null ? cell.textContent : raw;
    var number = parseFloat(text);
    return isNaN(number) || String(number) !== String(Number(text)) ? text : number;
  }
  var PAGE = 100;
  function button(text) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    return b;
  }
  function paginate(table) {
    var count = table.tBodies[0].rows.length;
    var pages = Math.ceil(count / PAGE);
    if (pages <= 1) { return function () {}; }
    var pager = document.createElement("div");
    var prev = button("\u2039 previous"), next = button("next \u203a");
    var label = document.createElement("span");
    pager.className = "pager";
    pager.appendChild(prev); pager.appendChild(label); pager.appendChild(next);
    table.parentNode.insertBefore(pager, table.nextSibling);
    var page = 0;
    function show(wanted) {
      page = Math.min(Math.max(wanted, 0), pages - 1);
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) {
        row.hidden = Math.floor(i / PAGE) !== page;
      });
      label.textContent = " rows " + (page * PAGE + 1) + "\u2013" +
        Math.min((page + 1) * PAGE, count) + " of " + count + " ";
      prev.disabled = page === 0;
      next.disabled = page === pages - 1;
    }
    prev.addEventListener("click", function () { show(page - 1); });
    next.addEventListener("click", function () { show(page + 1); });
    show(0);
    return function () { show(0); };
  }
  function missing(value) { return value === "" || value === "-"; }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b));
  }
  function sortBy(table, header, index, firstPage) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = cellValue(r1, index), b = cellValue(r2, index);
      if (missing(a) || missing(b)) {  // empty cells stay at the bottom either way
        return missing(a) === missing(b) ? 0 : (missing(a) ? 1 : -1);
      }
      return ascending ? compare(a, b) : -compare(a, b);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    firstPage();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var firstPage = paginate(table);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.addEventListener("click", function () { sortBy(table, header, index, firstPage); });
    });
  });
  document.documentElement.setAttribute("data-report-ready", "1");
})();
