"""Depth-first work over trees of any depth, without recursion.

A directory tree may be nested deeper than Python's call stack (a real directory 1,200
levels down, or a crafted snapshot). Code that walks one is written as a generator per
directory: where it would call itself for a subdirectory, it ``yield``s the generator
for that subdirectory instead, and receives its return value back from the ``yield``.
:func:`run_nested` drives such generators with a stack of its own, so the depth costs
memory, not call frames; the order of the work is exactly that of the recursive code.
:func:`flatten_nested` does the same for walks that only yield items, and
:func:`remove_tree` removes a tree of any depth.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# A generator that yields the generators of its children's work, receives each child's
# result in return, and returns its own result.
Nested = Generator["Nested[Any]", Any, T]


def run_nested(root: Nested[T]) -> T:
    """The result of ``root``, each yielded child run to its end before its parent resumes.

    A child's exception is thrown into its parent at the ``yield``, as it would come out
    of a call: the parent may handle it and go on, or let it go up further."""
    stack: list[Nested[Any]] = [root]
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is not None:
                thrown, error = error, None
                child = stack[-1].throw(thrown)
            else:
                child = stack[-1].send(value)
        except StopIteration as done:
            stack.pop()
            if not stack:
                result: T = done.value
                return result
            value = done.value
            continue
        except BaseException as exc:
            stack.pop()
            if not stack:
                raise
            error = exc
            continue
        stack.append(child)
        value = None


def flatten_nested(root: Iterator[T | Iterator[Any]]) -> Iterator[T]:
    """The items of ``root`` in order, where an item that is itself an iterator (a
    subtree's) is replaced by its own items, however deep: a walk that would ``yield
    from`` itself for a subdirectory yields the subdirectory's iterator instead."""
    stack: list[Iterator[Any]] = [root]
    while stack:
        item: Any = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, Iterator):
            stack.append(item)
        else:
            yield item


_END = object()


def remove_tree(path: str | os.PathLike[str], ignore_errors: bool = False) -> None:
    """Remove a directory tree of any depth, never following a symlink out of it
    (``shutil.rmtree`` and ``os.walk`` recurse in Python 3.11)."""
    stack: list[tuple[str, bool]] = [(os.fspath(path), False)]
    while stack:
        here, emptied = stack.pop()
        try:
            if emptied:
                os.rmdir(here)
                continue
            stack.append((here, True))
            with os.scandir(here) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, False))
                    else:
                        os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError:
            if not ignore_errors:
                raise
