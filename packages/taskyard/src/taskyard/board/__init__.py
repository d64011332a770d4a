"""The board: taskyard for people, in the browser (server-rendered pages and htmx).

A sub-app of its own, mounted on the API at `BOARD_PREFIX` and absent from its OpenAPI
document. It shares the API's state (the `Database`, settings, cursor codec), so its routes
take the same sessionwise sessions and call the same services the API's routers do. Its errors
are pages, not problem documents; its sign-in is a server-side session (`taskyard.board.sessions`)
opened with an API key.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from sessionwise.fastapi import install_error_handlers
from taskyard.board.errors import database_failure_page, install_page_handlers
from taskyard.board.headers import SecurityHeadersMiddleware
from taskyard.board.routes import router
from taskyard.board.tokens import BoardTokens

__all__ = ["BOARD_PREFIX", "mount_board"]

BOARD_PREFIX = "/board"


def mount_board(api: FastAPI, secret: bytes) -> FastAPI:
    """Mount the board on *api*; *secret* signs its cookies (keys derived per purpose)."""
    board = FastAPI(title="taskyard board", openapi_url=None, docs_url=None, redoc_url=None)
    # One state for both apps: the Database the API's lifespan starts (or a test points it
    # at) is the board's too.
    board.state = api.state
    api.state.board_tokens = BoardTokens(secret)
    install_page_handlers(board)
    install_error_handlers(board, render=database_failure_page)
    board.add_middleware(SecurityHeadersMiddleware)
    board.include_router(router)
    static = StaticFiles(directory=str(files("taskyard.board") / "static"))
    board.mount("/static", static, name="static")
    api.mount(BOARD_PREFIX, board, name="board")
    return board
