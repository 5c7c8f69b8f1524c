"""Stored event channels in the one channel vocabulary (``tracking.channels``).

The /v1, Optimizely and /collect doors stored a source's channel as ``browser``, ``mobile``,
``server`` or ``pos``, and ``context.channel`` as the client sent it, while the Stream door and
/v2/callFlows stored Sitecore's ``WEB``. One UPDATE rewrites every value that differs from its
vocabulary name; the expression is ``channel_normalise`` in SQL, so rows already right are not
written. The old words cannot be told apart afterwards: going back leaves the values as they are.
"""

from django.db import migrations, models

from tracking.channels import channel_normalised_sql

HELP_TEXT = (
    "Sitecore's channel names (WEB, MOBILE_APP, SERVER_SIDE, …; every door's own word is stored "
    "as one of them) or the business's own, upper case."
)


def channels_normalise(apps, schema_editor):
    Event = apps.get_model("tracking", "Event")
    normalised = channel_normalised_sql("channel")
    Event.objects.alias(normalised=normalised).exclude(channel=models.F("normalised")).update(
        channel=normalised
    )


class Migration(migrations.Migration):
    dependencies = [("tracking", "0008_event_redundant_indexes")]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="channel",
            field=models.CharField(blank=True, help_text=HELP_TEXT, max_length=32),
        ),
        migrations.RunPython(channels_normalise, migrations.RunPython.noop),
    ]
