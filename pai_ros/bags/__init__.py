"""Bags: record ROS 2 traffic into rosbag2 (MCAP) bags; convert bags to Parquet and MP4, or to a LeRobotDataset.

Pure core: nothing here imports rclpy (the live recorder node in ``pai_ros.ros.recorder_node``
is a thin adapter over :class:`pai_ros.bags.writer.BagWriter`). Modules:

* ``typestore``: rosbags type store with the project's ``FeatureActivations`` message;
* ``embedded_types``: the definitions a bag embeds, read and checked against ours (old bags decode);
* ``writer``: :class:`~pai_ros.bags.writer.BagWriter`, raw CDR in, a playable bag out;
* ``ledger``: :class:`~pai_ros.bags.ledger.RecordingLedger`, a recording's counters and what the recorder
  reports from them (status, closing summary);
* ``to_parquet``: :func:`~pai_ros.bags.to_parquet.bag_to_parquet`, bag in, tables and videos out;
* ``to_dataset``: :func:`~pai_ros.bags.to_dataset.bags_to_dataset`, bags in, a LeRobotDataset out;
* ``recover``: a killed recorder's unfinished bag read up to its first damaged record, written whole;
* ``commands``: the ``pai bag2parquet``, ``pai bag2dataset`` and ``pai bag recover`` subcommands;
* ``errors``: what can go wrong with a bag (:class:`~pai_ros.bags.errors.CorruptBag`,
  ``UnknownMessageType``, ``BagWriteError``), each a one-line ``UserError``.

Importing this package is cheap; import the submodule you need.
"""
