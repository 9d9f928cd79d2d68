"""The trainers, one TaskTrainer subclass per trainable task (base.py says what one is).

A task that can be trained names its trainer class in its TaskSpec (tasks/), and
tasks.spec.trainer_for finds it: what a task is stays in one place, and nothing
here imports the tasks. A trainer's module imports its library only inside
train(), so importing the class is cheap.
"""
