"""A long CP-SAT solve must not starve other threads of the process: kafka-python 3 runs
its network I/O (heartbeats, fetches) on a background thread while the scheduler solves."""

import random
import threading
import time

from ortools.sat.python import cp_model


def test_other_threads_run_while_the_solver_works():
    model = cp_model.CpModel()
    size = 40
    rng = random.Random(1)
    x = [[model.new_bool_var(f"x{i}_{j}") for j in range(size)] for i in range(size)]
    for i in range(size):
        model.add_exactly_one(x[i])
        model.add_exactly_one(x[j][i] for j in range(size))
    model.minimize(sum(rng.randint(0, 1000) * x[i][j] for i in range(size) for j in range(size)))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 0.5  # long enough to matter; not the scheduler's path

    beats = 0
    done = threading.Event()

    def heartbeat():
        nonlocal beats
        while not done.is_set():
            beats += 1
            time.sleep(0.001)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    started = time.perf_counter()
    solver.solve(model)
    solving = time.perf_counter() - started
    done.set()
    thread.join()
    # If the solver held the GIL, the other thread would not run at all while it solves.
    assert solving > 0.2
    assert beats > 20, f"{beats} beats in {solving:.2f} s of solving"
