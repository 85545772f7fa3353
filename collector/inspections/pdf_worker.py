"""``python -m collector.inspections.pdf_worker``: HTML documents in, one PDF out.

render() lays out a large report's PDF in parts, in two such processes at once, so
the layout uses both cores and its memory is returned when the process ends. Reads a
JSON list of HTML documents on standard input, lays out each (loading nothing from
files or the network) and writes their pages, in order, as one PDF to standard
output. Exit status 1 with the reason on standard error when a part cannot be laid out.
"""

from __future__ import annotations

import json
import sys

from collector.inspections.render import join_pdfs, pdf_of_html


def main() -> int:
    parts = json.loads(sys.stdin.buffer.read())
    try:
        document = join_pdfs([pdf_of_html(str(html)) for html in parts])
    except Exception as exc:  # reported to the parent, which raises
        print(f"cannot lay out the report part: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
