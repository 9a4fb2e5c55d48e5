"""The repository's files, as git lists them: tracked ones, and new ones it does not ignore.

    repository_files(ROOT)  # {"app.py", "tests/conftest.py", ...}, paths relative to ROOT

A copy of the template may have no .git at all (a ZIP download) or none of our history
(GitHub's "Use this template"). With a .git and the git command, git itself answers (it
knows every exclude file); without them, the folder is walked and .gitignore applied as
git applies it, simply (folder_files): enough for this repository's .gitignore, which a
test checks against git's answer.
"""

import fnmatch
import os
import shutil
import subprocess


def repository_files(root):
    if (root / ".git").exists() and shutil.which("git"):
        return git_files(root)
    return folder_files(root)


def git_files(root):
    command = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    return {path for path in listed.stdout.splitlines() if (root / path).is_file()}


def folder_files(root):
    """Every file under root but .git, less those root's .gitignore ignores.

    Its rules as git reads them: blank lines and # comments skipped; the last rule that
    matches decides, and "!" keeps what an earlier rule ignored; a rule ending in "/"
    matches folders only; a rule with a "/" before its end matches the path from the root,
    one without matches a name at any depth; an ignored folder is not entered. (Left out:
    .gitignore files in subfolders, "**", and files tracked although ignored.)
    """
    rules = read_gitignore(root / ".gitignore")
    files = set()
    for folder, subfolders, names in os.walk(root):  # a link to a folder is a folder here
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        subfolders[:] = [
            name
            for name in subfolders
            if not (prefix == "" and name == ".git") and not ignored(rules, prefix + name, True)
        ]
        # .git is a folder in a clone, a file in a git worktree: neither is the repository's.
        names = [name for name in names if not (prefix == "" and name == ".git")]
        files.update(prefix + name for name in names if not ignored(rules, prefix + name, False))
    return files


def read_gitignore(path):
    """[(keep, pattern, anchored, folders_only)] of a .gitignore file (none without it)."""
    rules = []
    lines = path.read_text().splitlines() if path.is_file() else []
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.removeprefix("!")
        folders_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = "/" in pattern
        rules.append((keep, pattern.lstrip("/"), anchored, folders_only))
    return rules


def ignored(rules, path, is_folder):
    result = False
    for keep, pattern, anchored, folders_only in rules:
        if folders_only and not is_folder:
            continue
        if fnmatch.fnmatchcase(path if anchored else path.rsplit("/", 1)[-1], pattern):
            result = not keep
    return result
