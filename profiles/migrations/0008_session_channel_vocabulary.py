"""Stored session channels in the one channel vocabulary (``tracking.channels``).

Sessions took their channel from their first event, so they carry the same old words as events
(``browser``, ``mobile``, ``server``, ``pos``); one UPDATE maps them as tracking's 0009 maps
events. Going back leaves the values as they are.

Sessions of one guest that were apart only by the channel's name (a visit's ``browser`` session
and the zero-second ``WEB`` session of each callFlows exposure in it) are left apart, not
merged. Joining sessions is the pipeline's work (``profiles.sessions``: clusters by the
workspace's timeout, forced closes that seal a session, counts, first and last pages, events and
flow executions moved to the keeper); a copy of that in SQL here would be a second
sessioniser that can disagree with the first, and the pipeline's code, written against
today's models, cannot safely run in a migration, which must work on the tables as they were at
this point of history. The pipeline heals them
where it matters: the next event of the guest on that channel within the timeout joins every
session its cluster spans. Closed, historical visits keep their extra sessions.
"""

from django.db import migrations, models

from tracking.channels import channel_normalised_sql

HELP_TEXT = (
    "Sitecore's channel names (WEB, MOBILE_APP, SERVER_SIDE, …; every door's own word is stored "
    "as one of them) or the business's own, upper case."
)


def channels_normalise(apps, schema_editor):
    Session = apps.get_model("profiles", "Session")
    normalised = channel_normalised_sql("channel")
    Session.objects.alias(normalised=normalised).exclude(channel=models.F("normalised")).update(
        channel=normalised
    )


class Migration(migrations.Migration):
    dependencies = [("profiles", "0007_guest_name_prefix_indexes")]

    operations = [
        migrations.AlterField(
            model_name="session",
            name="channel",
            field=models.CharField(blank=True, help_text=HELP_TEXT, max_length=32),
        ),
        migrations.RunPython(channels_normalise, migrations.RunPython.noop),
    ]
