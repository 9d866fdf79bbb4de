"""Where things are and how long walking and work take: the two travel models.

`seed` reproduces the original prototype: every task starts at the entrance, walking to room
R takes `floor_s * floor_index(R) + room_s * room_number(R)` (A=1), walking to the exit is
free. `layout` lets staff walk from where they are: along a corridor between rooms of one
floor (`corridor_s` per room), through the entrance between floors; the exit is the entrance.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.config import Config

ENTRANCE = "entrance"
ROLE_OF_KIND = {
    "escort_in": "porter",
    "escort_out": "porter",
    "visit": "medical",
    "clean": "cleaner",
    "clean_terminal": "cleaner",
}
# The lifecycle: the task that the completion of each kind of task creates (a room that held
# an isolation patient gets a `clean_terminal` where the others get a `clean`: one step).
NEXT_KIND = {"escort_in": "visit", "visit": "escort_out", "escort_out": "clean"}
STEP_OF_KIND = {"clean_terminal": "clean"}


def step(kind: str) -> str:
    """The lifecycle step a task kind is: `clean_terminal` is a `clean`."""
    return STEP_OF_KIND.get(kind, kind)


@dataclass(frozen=True)
class RoomPlace:
    room_id: str
    floor_index: int  # 1 for the ground floor
    number: int


class Layout:
    def __init__(self, config: Config):
        travel = config.travel
        self.model = travel.model
        self._floor_ms = round(travel.floor_s * 1000)
        self._room_ms = round(travel.room_s * 1000)
        self._corridor_ms = round(travel.corridor_s * 1000)
        self.treatment_ms = round(config.durations.treatment_s * 1000)
        self.cleaning_ms = round(config.durations.cleaning_s * 1000)
        self.terminal_cleaning_ms = round(config.durations.terminal_cleaning_s * 1000)
        self.rooms: dict[str, RoomPlace] = {}
        for floor_index, floor in enumerate(config.hospital.floors, start=1):
            for number in range(1, config.hospital.rooms_per_floor + 1):
                room_id = f"{floor}{number}"
                self.rooms[room_id] = RoomPlace(room_id, floor_index, number)
        # Asked for every task and free room of every tick: worked out once.
        self._from_entrance = {
            room.room_id: self._floor_ms * room.floor_index + self._room_ms * room.number
            for room in self.rooms.values()
        }
        self._work_ms = {
            "visit": self.treatment_ms,
            "clean": self.cleaning_ms,
            "clean_terminal": self.terminal_cleaning_ms,
        }
        # The seed model times a task by its kind and room alone: each worked out once.
        self._seed_task_ms: dict[tuple[str, str], tuple[int, str]] = {}

    def from_entrance(self, room_id: str) -> int:
        return self._from_entrance[room_id]

    def walk(self, origin: str, destination: str) -> int:
        """Milliseconds to walk between two places (the entrance or rooms) in this model."""
        if origin == destination:
            return 0
        if self.model == "seed" or ENTRANCE in (origin, destination):
            if destination == ENTRANCE:
                return 0 if self.model == "seed" else self.from_entrance(origin)
            return self.from_entrance(destination)
        a, b = self.rooms[origin], self.rooms[destination]
        if a.floor_index == b.floor_index:
            return self._corridor_ms * abs(a.number - b.number)
        return self.from_entrance(origin) + self.from_entrance(destination)

    def walking_ms(self, location: str, kind: str, room_id: str) -> int:
        """The walking part of a task: its duration less the treatment or cleaning."""
        return self.task_ms(location, kind, room_id)[0] - self._work_ms.get(kind, 0)

    def task_ms(self, location: str, kind: str, room_id: str) -> tuple[int, str]:
        """How long a task takes from the staff member's location, and where they end up."""
        if self.model == "seed":
            known = self._seed_task_ms.get((kind, room_id))
            if known is None:
                known = self._seed_task_ms[kind, room_id] = self._seed_task(kind, room_id)
            return known
        walk = self.walk
        if kind == "escort_in":
            return walk(location, ENTRANCE) + walk(ENTRANCE, room_id), room_id
        if kind == "escort_out":
            return walk(location, room_id) + walk(room_id, ENTRANCE), ENTRANCE
        return walk(location, room_id) + self._work_ms[kind], room_id

    def _seed_task(self, kind: str, room_id: str) -> tuple[int, str]:
        # The prototype: every task is timed from the entrance.
        durations = {
            "escort_in": (self.from_entrance(room_id), room_id),
            "escort_out": (0, ENTRANCE),
            "visit": (self.from_entrance(room_id) + self.treatment_ms, room_id),
            "clean": (self.from_entrance(room_id) + self.cleaning_ms, room_id),
            "clean_terminal": (self.from_entrance(room_id) + self.terminal_cleaning_ms, room_id),
        }
        return durations[kind]
