"""Where scripts written for the course import the executor from: `from yaml_reader import YamlPipelineExecutor`.
It lives in core/app/executor.py."""

from core.app.executor import YamlPipelineExecutor

__all__ = ["YamlPipelineExecutor"]
