"""The two-stage training jobs on Ray Train (`jobs/train_stage1.py`, `jobs/train_stage2.py`).

    config      TrainConfig and its schedules        data        the streaming training set, validation clips
    run         the driver: `run_training`           loop        the Ray Train worker
    checkpoint  the Ray run-folder protocol: checkpoint folders, stage-2 initialisation, export
"""
