from sqlalchemy import text

from sessionwise import Database


async def test_each_backend_answers(database_url: str) -> None:
    async with Database(database_url) as db:
        assert await db.ping()
        async with db.session() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        assert db.pool_status().checked_out == 0
