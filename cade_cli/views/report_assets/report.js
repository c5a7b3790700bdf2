/* cade experiment report: click a trials-table header to sort by it (again to reverse). */
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-value");
    var text = raw === null ? cell.textContent : raw;
    var number = parseFloat(text);
    return isNaN(number) || String(number) !== String(Number(text)) ? text : number;
  }
  function missing(value) { return value === "" || value === "-"; }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b));
  }
  function sortBy(table, header, index) {
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
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.addEventListener("click", function () { sortBy(table, header, index); });
    });
  });
  document.documentElement.setAttribute("data-report-ready", "1");
})();
