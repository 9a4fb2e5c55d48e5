"""Download the service's stored rows (GET /export) into a file, with progress; resumable.

    ADMIN_TOKEN=... python clients/export.py URL OUT [--since ...] [--until ...]
                    [--model-version ...] [--labelled true|false]
    make export URL=https://my-app.up.railway.app OUT=traffic.csv

The token comes from the environment variable ADMIN_TOKEN (never the command line: it would
stay in the shell's history). OUT ending in .jsonl gets JSON lines; any other name, CSV. The
filters are GET /export's (docs/api.md): times in ISO 8601, a model version, labelled rows.

Resumable: when OUT exists, the rows after its last one are fetched (?after_id= the row_id
of its last line) and appended, so that an interrupted run, run again with the same
arguments, ends with the file one run would have written. A last line cut short (the
process killed while writing) is dropped first and fetched again. The same arguments
matter: the service checks nothing of the filters a file was begun with, but when the
columns differ from the file's, the run stops and says so.

Exit status: 0 when every row is written; 1 when the download broke (what was written is
kept: run it again to resume); 2 when the run cannot be done (no token, a file that cannot
be read or written, a service that refuses), with one sentence that says why; 130 when
interrupted (Ctrl-C: run it again to resume).

Needs requests and tqdm (requirements_dev.txt has them); nothing else of the project.
"""

import argparse
import csv
import io
import json
import os
import sys
from collections import deque
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

CONNECT_TIMEOUT = 10  # seconds
READ_TIMEOUT = 300  # seconds between two pieces of the stream
FLUSH_ROWS = 1000  # rows written between two flushes (and progress bar updates)


class UsageError(Exception):
    """The run cannot be done: one sentence that says why (exit status 2)."""


class Broken(Exception):
    """The download stopped before its end (exit status 1): resumable."""


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="Download the service's stored rows (GET /export); resumes OUT if it exists.",
        epilog="Reads the admin token from the ADMIN_TOKEN environment variable.",
    )
    parser.add_argument("url", help="the service, e.g. https://my-app.up.railway.app")
    parser.add_argument("output", type=Path, help="the file to write: .jsonl for JSON lines")
    parser.add_argument("--since", help="only rows stored at or after this time (ISO 8601)")
    parser.add_argument("--until", help="only rows stored before this time (ISO 8601)")
    parser.add_argument("--model-version", help="only the rows of this model version")
    parser.add_argument(
        "--labelled", choices=["true", "false"], help="only the rows with (or without) a true value"
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------
# Where a file left off
# ---------------------------------------------------------------------------------------


def resume_point(path, output_format):
    """(the file's columns or None, the row_id of its last row or None), after dropping a
    last line cut short."""
    if not path.exists() or path.stat().st_size == 0:
        return None, None
    try:
        drop_torn_line(path)
        with open(path, newline="", encoding="utf-8") as file:
            if output_format == "csv":
                lines = csv.reader(file, strict=True)
                header = next(lines, None)
                last = next(iter(deque(lines, maxlen=1)), None)  # read through, keep the last
            else:
                header = last = None
                for text in file:
                    last = list(json.loads(text, object_pairs_hook=list))
                    header = header or [name for name, _ in last]
                last = None if last is None else [value for _, value in last]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as error:
        raise UsageError(
            f"Cannot resume {path} ({error}): it is not a file this export wrote; delete it "
            "or name another file."
        ) from None
    if (header is not None and header[:1] != ["row_id"]) or (last and not str(last[0]).isdigit()):
        raise UsageError(f"Cannot resume {path}: it is not a file GET /export wrote.")
    return header, None if last is None else int(last[0])


def drop_torn_line(path, block=65536):
    """Cut what follows the last line break (a line the process was killed writing)."""
    with open(path, "rb+") as file:
        size = end = file.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - block)
            file.seek(start)
            chunk = file.read(end - start)
            if b"\n" in chunk:
                end = start + chunk.rindex(b"\n") + 1
                break
            end = start
        if end != size:
            file.truncate(end)


# ---------------------------------------------------------------------------------------
# The download
# ---------------------------------------------------------------------------------------


def open_export(options, output_format, after_id):
    token = os.environ.get("ADMIN_TOKEN", "")
    if not token:
        raise UsageError("Set ADMIN_TOKEN, the service's admin token, in the environment.")
    url = options.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"The URL must start with http:// or https://, not {options.url!r}.")
    parameters = {
        "format": output_format,
        "since": options.since,
        "until": options.until,
        "model_version": options.model_version,
        "labelled": options.labelled,
        "after_id": after_id,
    }
    try:
        response = requests.get(
            f"{url}/export",
            params={name: value for name, value in parameters.items() if value is not None},
            headers={"Authorization": f"Bearer {token}", "User-Agent": "export.py"},
            stream=True,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except requests.RequestException as error:
        raise UsageError(f"Cannot reach the service at {url} ({error}).") from None
    if response.status_code == 404:
        raise UsageError(
            f"{url}/export answered 404: ADMIN_TOKEN is not the service's token, the service "
            "has no ADMIN_TOKEN set, or it is from a release without /export."
        )
    if response.status_code != 200:
        try:
            detail = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            detail = response.text.strip()[:160] or "(empty body)"
        raise UsageError(f"{url}/export answered HTTP {response.status_code}: {detail}.")
    response.raw.decode_content = True
    return response


def received_rows(response, output_format):
    """(the columns, then each row as a list of its cells or its JSON line)."""
    text = io.TextIOWrapper(response.raw, encoding="utf-8", newline="")
    if output_format == "csv":
        lines = csv.reader(text, strict=True)
        yield next(lines)
        yield from lines
        return
    header_sent = False
    for line in text:
        if not header_sent:
            yield [name for name, _ in json.loads(line, object_pairs_hook=list)]
            header_sent = True
        yield line
    if not header_sent:
        yield None  # no row: a JSON lines file has no header


def download(options):
    output_format = "jsonl" if options.output.suffix == ".jsonl" else "csv"
    header, after_id = resume_point(options.output, output_format)
    response = open_export(options, output_format, after_id)
    total = int(response.headers.get("X-Export-Rows", 0))
    written = 0
    try:
        rows = received_rows(response, output_format)
        columns = next(rows)
        if header is not None and columns is not None and columns != header:
            raise UsageError(
                f"The export's columns are not those of {options.output} (run with other "
                "filters, or the service changed): delete it, or name another file."
            )
        with (
            open(options.output, "a", newline="", encoding="utf-8") as file,
            tqdm(total=total, unit="row", desc="exporting") as progress,
        ):
            writer = csv.writer(file)
            if header is None and output_format == "csv":
                writer.writerow(columns)
            for row in rows:
                if output_format == "csv":
                    writer.writerow(row)
                else:
                    file.write(row)
                written += 1
                if written % FLUSH_ROWS == 0:
                    file.flush()
                    progress.update(FLUSH_ROWS)
            progress.update(written % FLUSH_ROWS)
    except (
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
        csv.Error,
        ValueError,
    ) as error:
        if isinstance(error, OSError) and error.filename:
            raise UsageError(f"Cannot write {error.filename} ({error.strerror}).") from None
        raise Broken(f"The download broke after {written:,} rows ({error}).") from None
    finally:
        response.close()
    return written


def main(argv=None):
    options = parse_arguments(argv)
    try:
        written = download(options)
    except UsageError as error:
        print(f"export.py: {error}", file=sys.stderr)
        return 2
    except Broken as error:
        print(f"export.py: {error} Run the same command again to resume.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\nInterrupted: {options.output} holds the rows written so far. Run the same "
            "command again to resume.",
            file=sys.stderr,
        )
        return 130
    print(f"Wrote {written:,} rows to {options.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
